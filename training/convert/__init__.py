"""Foreign checkpoints -> vistas models: Hugging Face SigLIP / SigLIP 2 and big_vision `.npz`.

    sources.py       load_source("hf:..." | "npz:..." | vistas checkpoint) -> LoadedModel
    hub.py           hf: ids through the local Hugging Face cache, never a download
    hf_siglip.py     transformers SiglipModel / Siglip2Model config + weights
    hf_processor.py  their image processor and tokenizer -> ImageSpec, TextSpec, tokenizer.json
    big_vision.py    big_vision two-tower .npz parameter trees
"""
