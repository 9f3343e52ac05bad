"""AuraSR (``spandrel.architectures.AuraSR``, GigaGAN's ``UnetUpsampler``): **not retrofitted**
(no adapter; ``retrofit`` refuses it as an unrecognised structure).

An LR feature map does exist structurally: the U-Net runs ``init_conv``, the ``downs`` (LR,
1/2, 1/4), the ``mid_*`` blocks (1/8) and ``ups[0..2]`` back to the input resolution; the
output of ``ups[2]`` (the input of ``ups[3][1][0]``, a ``NearestNeighborhoodUpsample``) would
be the cut, and ``ups[3]``, ``ups[4]``, ``final_res_block`` and ``final_to_rgb`` the fixed x4
tail. But the network is a *generative* upsampler whose forward is random, so there is no
deterministic function of the image at that cut to keep:

1. ``UnetUpsampler.forward`` adds ``torch.randn_like(x) * 0.001`` to the input (then clamps to
   [0, 1]) on every call.
2. With ``styles=None`` — the only way spandrel calls it — it draws a fresh latent
   ``torch.randn(B, style_network.dim_in)`` per call, maps it through the StyleGAN mapping
   network (``style_network``), and ``style_to_conv_modulations`` splits the style into the
   modulation *and* kernel-selection weights of every ``AdaptiveConv2DMod`` of every
   ``ResnetBlock`` — including all of those before the cut (``downs``, ``mid_block1/2``,
   ``ups[0..2]``). The features at the cut are therefore a random function of that latent.

A retrofit must reproduce the network's own pre-tail features (``check_cut``), keep the input
model's output unchanged and give reproducible saved / exported models; none of that holds for
a forward that samples. Fixing the latent (zeros, a mean style, a stored draw) would make a
different, deterministic network that AuraSR never was, not a retrofit of it.
"""

ADAPTERS: tuple = ()
