"""Profile pillar (FECBench): stressors, DoE, campaigns, surrogates, predictor."""
