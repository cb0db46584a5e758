"""The resource agent's core: load forecasts, replica schedules, runway and scaling signals."""
