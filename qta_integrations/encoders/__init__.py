"""Encoders: the default embedding model on ONNX Runtime, and what an index records of one.

* `OnnxEmbeddings` (`qta_integrations.encoders.onnx`): a BERT sentence encoder exported to
  ONNX once into the package cache (`qta_integrations.encoders.export`), fp32 by default
  (int8 on request);
* `EncoderConfig` (`qta_integrations.encoders.config`): the backend (``onnx`` or ``torch``),
  precision and thread count of the default model, also from ``QTA_ENCODER*`` variables;
* `encoder_identity` (`qta_integrations.encoders.identity`): the model, backend and precision
  an index records, so that it is never searched with vectors of another encoder.
"""

from qta_integrations.encoders.config import EncoderConfig
from qta_integrations.encoders.identity import encoder_identity
from qta_integrations.encoders.onnx import OnnxEmbeddings

__all__ = ["EncoderConfig", "OnnxEmbeddings", "encoder_identity"]
