// The journey: the lab's sections in the order the articles teach them, each with a quick check. A question's
// choices are [text, why]; `right` is the index of the right one. Every wrong answer says why it is wrong.
"use strict";

const LESSONS = [
  { id: "noise", title: "Noise", checks: [
    { q: "Why does diffusion add Gaussian noise rather than, say, uniform noise?", right: 1, choices: [
      ["Gaussian noise is smaller, so it destroys less of the data.",
        "The size is set by the schedule, not by the distribution: any noise can be scaled up or down."],
      ["Gaussians add up to a Gaussian, so x_t has a closed form at every t and the end, N(0, I), is easy to draw.",
        "Right: that closed form is what lets training jump to any t, and sampling start from N(0, I)."],
      ["Computers cannot draw uniform numbers quickly.",
        "Uniform numbers are the cheapest to draw; this page makes its Gaussians from them (Box-Muller)."]] },
    { q: "Every pixel of a noise image is drawn on its own from N(0, 1). What does the image look like?", right: 2, choices: [
      ["Smooth blobs.", "Blobs need neighbouring pixels that agree; independent pixels never do."],
      ["Mostly black.", "N(0, 1) is symmetric about 0, shown as mid-grey: as many bright pixels as dark ones."],
      ["Grey static with no structure.", "Right: no pixel knows about its neighbours, so nothing lines up."]] }] },
  { id: "forward", title: "Forward process", checks: [
    { q: "To get x_500 from x_0, how many noising steps must be simulated?", right: 0, choices: [
      ["None: one jump, with one draw of eps.",
        "Right: Gaussian steps compose, so q(x_t | x_0) has the closed form above (Ho et al. 2020, eq. 4)."],
      ["500, one after another.",
        "That is how the chain is defined, but its steps compose into one Gaussian: training never simulates them."],
      ["It depends on the data.", "The forward process never looks at what x_0 is: the same formula for every data set."]] },
    { q: "At the t where alpha_bar = 0.5, what is the SNR?", right: 1, choices: [
      ["0.5", "That is alpha_bar itself; the SNR divides the signal's share by the noise's: 0.5 / 0.5."],
      ["1, which is 0 dB", "Right: alpha_bar / (1 - alpha_bar) = 1; the signal and the noise have the same power."],
      ["2", "That would need alpha_bar = 2/3: twice as much signal as noise."]] }] },
  { id: "schedules", title: "Schedules", checks: [
    { q: "At the same t halfway through, which schedule has destroyed more of the signal?", right: 0, choices: [
      ["The linear one.", "Right: its SNR collapses early, so its last few hundred steps are nearly pure noise."],
      ["The cosine one.", "The cosine schedule (Nichol & Dhariwal 2021) was made to destroy the signal more slowly in the middle."],
      ["Both the same: they end at the same place.", "They share the ends, not the way between: compare the two curves at the marker."]] },
    { q: "What does a zero terminal SNR mean?", right: 2, choices: [
      ["The SNR is 0 dB at the last step.", "0 dB is an SNR of 1: as much signal as noise. Zero SNR is minus infinity dB."],
      ["Training stops when the loss reaches zero.", "The terminal SNR is a property of the schedule, not of training."],
      ["alpha_bar is exactly 0 at the last step: no trace of the data is left.",
        "Right: otherwise the model trains on a little signal at t = T that sampling, starting from pure noise, never has."]] }] },
  { id: "reverse", title: "Reverse process", checks: [
    { q: "The network predicts eps_hat from x_t. How do we get its guess of the clean data?", right: 1, choices: [
      ["x0_hat = x_t - eps_hat", "That forgets the scales: x_t is sqrt(alpha_bar) x_0 plus sqrt(1 - alpha_bar) eps."],
      ["x0_hat = (x_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)", "Right: the forward formula solved for x_0."],
      ["It needs a second network.", "No: with eps_hat and the schedule, x0_hat is one line of algebra."]] },
    { q: "Early in sampling, when t is near T, the x0_hat picture looks...", right: 2, choices: [
      ["sharp and final.", "At high noise many clean images fit x_t; the network cannot know which one yet."],
      ["like pure noise.", "x_t is nearly noise; x0_hat is the network's guess of clean data, never noise."],
      ["blurry: an average of the images x_t could have come from.",
        "Right: under a squared error the best guess is their mean, which is blurry; it sharpens as t falls."]] }] },
  { id: "samplers", title: "Samplers", checks: [
    { q: "On the same model with 10 steps, which usually lands closer to the data?", right: 0, choices: [
      ["DDIM: it follows the deterministic ODE, which tolerates large steps.",
        "Right: with few steps, DDIM and DPM-Solver++ beat ancestral DDPM by a wide margin (see the chart)."],
      ["DDPM: its fresh noise corrects the errors.", "At few steps each ancestral step's fresh noise adds more error than it corrects."],
      ["They are the same: the model is the same.", "The model is the same but the solver is not: compare their curves at 10 calls."]] },
    { q: "The cost of a sampler is counted in...", right: 1, choices: [
      ["steps.", "Heun makes two network calls per step; steps hide that."],
      ["network calls (NFE): the network dominates every step's time.", "Right: the x-axis of the chart."],
      ["seconds on this machine only.", "Seconds depend on the machine; calls compare samplers anywhere."]] }] },
  { id: "guidance", title: "Guidance", checks: [
    { q: "Classifier-free guidance at w = 3: what does one guided step cost?", right: 2, choices: [
      ["One network call.", "Only a guidance-distilled student folds both into one call (Meng et al. 2023); see Few steps."],
      ["Three calls, one per unit of w.", "w only weighs the two predictions; it costs nothing."],
      ["Two calls: with the class and with the null class.", "Right: eps = eps(null) + w (eps(c) - eps(null))."]] },
    { q: "Raising w...", right: 0, choices: [
      ["sticks closer to the class and loses diversity.", "Right: watch adherence rise and diversity fall on the readout."],
      ["makes the samples more diverse.", "It pushes every sample towards what the class looks like most, so they grow alike."],
      ["changes nothing for a well-trained model.", "The readout changes with w on every run; that is what guidance is for."]] }] },
  { id: "score", title: "The score", checks: [
    { q: "How is a noise predictor a score estimator?", right: 1, choices: [
      ["It is not: the score needs its own network.", "Tweedie's formula ties them: one network gives both."],
      ["score = -eps_hat / sqrt(1 - alpha_bar): the predicted noise, turned around and scaled.",
        "Right: removing the noise is walking up the density of x_t (Song et al. 2021)."],
      ["score = eps_hat", "The sign and the scale are missing: the score points towards the data, eps_hat away from it."]] }] },
  { id: "prompt", title: "Text and latents", checks: [
    { q: "How does the network read the prompt?", right: 2, choices: [
      ["The prompt's letters are painted into the image.", "The network never sees letters; it sees a text encoder's vectors."],
      ["Only at the first step.", "Every step reads it: the prompt steers the whole way from noise."],
      ["By cross-attention to the text encoder's token embeddings, at every step.",
        "Right: each position of the image asks which tokens matter to it (Rombach et al. 2022)."]] },
    { q: "Why train on a VAE's latents instead of pixels?", right: 0, choices: [
      ["Fewer numbers per image make every step cheaper; the decoder brings the pixels back.",
        "Right: latent diffusion's whole point (Rombach et al. 2022)."],
      ["Latents are noise-free.", "The latents are noised exactly like pixels during training."],
      ["Pixels cannot be noised.", "They can: the image runs here do it."]] }] },
  { id: "paths", title: "Diffusion and flow", checks: [
    { q: "A rectified flow's path is x = (1 - tau) x_0 + tau eps. What does its network predict?", right: 1, choices: [
      ["x_0 only.", "It could, but rectified flow learns the velocity, the path's derivative in tau."],
      ["The velocity eps - x_0.", "Right: its Euler steps walk along a straight line when the velocity is constant."],
      ["The score, exactly as a VP model.", "All are one family, but the flow's target is its velocity."]] },
    { q: "Why does reflow make sampling in one step better?", right: 2, choices: [
      ["It trains for longer.", "More steps of the same objective do not uncross the paths."],
      ["It uses a larger network.", "Reflow keeps the network; it changes the training pairs."],
      ["It trains on the model's own (noise, sample) pairs, so the paths stop crossing and straighten.",
        "Right: a straight path is walked exactly by one Euler step (Liu et al. 2023)."]] }] },
  { id: "fewsteps", title: "Few steps", checks: [
    { q: "Progressive distillation halves the number of steps each round by...", right: 0, choices: [
      ["training a student to land where two of its teacher's steps land, in one.",
        "Right: the student starts from its teacher's weights (Salimans & Ho 2022)."],
      ["skipping every other step of the teacher.", "Skipping steps is what the teacher does badly: that is why the student is trained."],
      ["pruning half the network.", "The student is as large as the teacher; it only needs fewer calls."]] }] },
  { id: "edit", title: "Editing", checks: [
    { q: "img2img at strength 0.3 starts from...", right: 1, choices: [
      ["pure noise.", "That is strength 1: the input is then forgotten."],
      ["the input noised to 30% of the way, then the last 30% of the steps.",
        "Right: the lower the strength, the more of the input survives (SDEdit, Meng et al. 2022)."],
      ["the input itself, with no noise.", "That is strength 0: it gives the input back."]] },
    { q: "Inpainting re-imposes the kept region after every step, noised to that step's level. Why noised?", right: 2, choices: [
      ["To hide the seam at the end.", "The kept pixels are put back exactly at the end; noise along the way is for the network."],
      ["To save network calls.", "It costs no calls either way."],
      ["So the whole image is at one noise level, the one the network expects at that step.",
        "Right: a clean patch inside a noisy image is something it never saw in training (RePaint, Lugmayr et al. 2022)."]] }] },
];

const TOOLS = [
  { id: "playground", title: "Playground" },
  { id: "draw", title: "Draw your data" },
  { id: "train", title: "Train" },
];
