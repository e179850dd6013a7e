"""Importing local Hugging Face BERT-family sequence classifiers (`bfexport import`); no
transformers import, nothing downloaded, nothing unpickled beyond torch.load(weights_only=True).

  architectures  the supported model types as data: config.json fields -> BudgetFormerConfig,
                 and where each weight lives (one Layout per weight layout).
  weights        model.safetensors (header checked first) or pytorch_model.bin (weights only).
  tokenizer      tokenizer.json as transformers' fast tokenizer encodes, or built from vocab.txt /
                 vocab.json + merges.txt; the padding token checked against pad_token_id.
  importer       the mapping onto BudgetFormer weights, routers opened, the checkpoint written.
"""

from bfexport.hf.architectures import ARCHITECTURES
from bfexport.hf.importer import import_checkpoint, import_model

__all__ = ["ARCHITECTURES", "import_checkpoint", "import_model"]
