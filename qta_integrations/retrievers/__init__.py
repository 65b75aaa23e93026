"""Framework adapters: thin layers over `qta_integrations.pipeline.QTAPipeline`."""
