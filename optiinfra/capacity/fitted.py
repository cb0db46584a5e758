"""Constants fitted on the Argonne vLLM rows by ``optiinfra.capacity.fit.refit``.

Generated: ``python -m optiinfra.capacity.fit > optiinfra/capacity/fitted.py``.
``tests/capacity/test_fit.py`` checks they still equal a re-fit.
"""

from optiinfra.capacity.physics import Efficiencies

EFFICIENCIES = Efficiencies(
    compute=0.6183563249151146,
    bandwidth=0.7905732669432278,
    step_overhead_s=0.0018511562768490915,
    per_sequence_s=7.795919675825642e-05,
    allreduce_s=3.078990762793259e-05,
    quantized_weight_efficiency=0.819679639216944,
    fp8_kv_native=2.548603603998248,
    fp8_kv_emulated=27.982144127481764,
)

#: 5th / 95th percentile of log(predicted time / measured time) over the rows.
LOG_RESIDUAL_BAND = (-0.15012194852895905, 0.08954080351115926)
