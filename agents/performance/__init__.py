"""The performance agent: bottleneck analysis and engine-argument tuning."""
