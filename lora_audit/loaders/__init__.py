"""Loading local diffusers models and LoRAs, shared by ``compare`` and ``train`` (so neither imports the other).

A small package rather than one module because it holds three concepts that grow separately: ``guard`` (stdlib
only, imported at CLI start: never a pickle), ``pipelines`` (which architecture a folder is, loading a pipeline or
its parts offline) and ``dit_lora`` (kohya FLUX.1 / SD3 LoRA keys to the diffusers modules they wrap). torch and
diffusers are imported inside the functions that need them.
"""
