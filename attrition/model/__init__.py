"""The logistic model: training, its numbers, metrics, the gate and drift decisions."""
