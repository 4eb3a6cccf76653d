# Quick start: `make demo` and `make test` do all set-up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned here only (pyproject declares a range): this installs the
# local CPU build first so the resolver never pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

# the lab's browser tests drive Debian's Chromium (Playwright cannot download browsers here)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: demo test bench bench-peers docs clean browser

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[viz,images,lab,text,test,docs]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/diffkit demo

browser:
	@test -x $(CHROMIUM) || { echo "installing Chromium for the browser tests (apt-get)"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# one worker per core (at most 4: each holds its own torch and fixtures), a test file per worker (a file's fixtures
# are built once); each test runs on one thread
test: $(VENV)/.installed browser
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile

bench: $(VENV)/.installed
	$(PY) benchmarks/toy2d.py

# peers for benchmarks/paths.py: torchcfm without its dependencies (its matchers need only torch, NumPy and POT;
# its torchdyn helpers are not used), POT from PyPI; for benchmarks/images.py: denoising-diffusion-pytorch and
# ema-pytorch without theirs (torchvision, accelerate and pytorch-fid are not needed by its guidance model), einops
bench-peers: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps "torchcfm==1.0.7"
	$(PY) -m pip install --quiet "pot>=0.9"
	$(PY) -m pip install --quiet --no-deps "denoising-diffusion-pytorch==2.3.4" "ema-pytorch>=0.4.2"
	$(PY) -m pip install --quiet "einops>=0.7"

# the documentation (docs/, mkdocs.yml) into site/; strict: a broken link or picture fails the build
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) demo_out .pytest_cache site
