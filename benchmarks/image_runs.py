"""Score a trained image run the way the README's image table does: 1,000 samples (classes cycled), dpmpp-2m at
20 steps, w = 3 in the run's guidance interval, w = 3 at every level, and w = 1; the judge's classifier-feature FD
against the test split beside its floor, precision / recall, class accuracy, colour purity (shapes); and a grid
of 10 samples per class.

    .venv/bin/diffkit train --data digits --cond --out runs/digits        # timed with /usr/bin/time -v
    .venv/bin/python benchmarks/image_runs.py digits runs/digits docs/digits_w3.png
"""
import sys, time, torch, numpy as np
from diffkit.runs import sample_run
from diffkit.training.checkpoint import load_run
from diffkit.data.images import load_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.shapes import colour_purity
from diffkit.viz.images import class_grid
torch.set_num_threads(2)
if len(sys.argv) != 4:
    sys.exit(__doc__)
spec, out, pic = sys.argv[1], sys.argv[2], sys.argv[3]
data = load_images(spec); judge = load_or_train_judge(data, progress=False); run = load_run(out)
print(f"judge acc {judge.test_accuracy:.4f}")
n = 1000; labels = np.arange(n) % data.num_classes
for w, interval in ((3.0, "run"), (3.0, None), (1.0, "run")):
    t1 = time.perf_counter()
    x = sample_run(run, n, "dpmpp-2m", 20, seed=0, cond=labels, guidance=w, guidance_interval=interval)
    dt = time.perf_counter() - t1
    m = evaluate_images(x, data, judge, labels=labels)
    extra = f" purity={colour_purity(x):.3f} (data {colour_purity(data.test):.3f})" if spec == "shapes" else ""
    print(f"w={w} interval={interval if interval is None else run.config.sampling.guidance_interval} sample {dt:.1f}s ({n/dt:.0f} img/s) fd={m['fd']:.3f} floor={m['fd_floor']:.3f} ratio={m['fd']/m['fd_floor']:.2f} acc={m['class_accuracy']:.3f} P={m['precision']:.3f} R={m['recall']:.3f} (floor P={m['precision_floor']:.3f} R={m['recall_floor']:.3f}){extra}", flush=True)
    if w == 3.0 and interval == "run":
        idx = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(data.num_classes)])
        class_grid(x[idx], labels[idx], pic, data.class_names, per_class=10)
