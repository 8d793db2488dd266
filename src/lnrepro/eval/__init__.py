"""Evaluations of trained models outside the training loop's own losses (SentEval)."""
