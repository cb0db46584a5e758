"""Run a deployment's load through its simulated engines in virtual time, without HTTP.

The servers of a live sandbox run in real time; this runs the same engines (scheduler,
step-time model, prefix cache) over the same schedule and prompts as fast as the CPU
allows, for tests and benchmarks that need minutes or hours of simulated traffic.
Requests go round-robin to the replicas, as the load generator sends them.
"""

from __future__ import annotations

from optiinfra.catalog import gpu_spec, model_spec
from optiinfra.sandbox.engine import EngineCore, SimRequest, prompt_block_hashes
from optiinfra.sandbox.load import PromptBuilder, schedule
from optiinfra.sandbox.perf import StepTimeModel
from optiinfra.sandbox.spec import DeploymentSpec


def simulate_deployment(
    deployment: DeploymentSpec,
    duration_s: float,
    *,
    seed: int = 0,
    noise: float = 0.0,
    start_epoch: float = 0.0,
) -> list[EngineCore]:
    """Replay ``duration_s`` seconds of the deployment's load from UTC epoch second
    ``start_epoch`` (which a load ``cycle`` reads); one engine per replica, each run
    until its last request has finished."""
    perf = StepTimeModel(
        gpu_spec(deployment.gpu), model_spec(deployment.model), deployment.engine_args
    )
    context = perf.max_model_len
    engines = [
        EngineCore(perf, deployment.engine_args, seed=seed + r, noise=noise, max_model_len=context)
        for r in range(max(1, deployment.replicas))
    ]
    plan = schedule(deployment.load, duration_s, seed=seed, start_epoch=start_epoch)
    prompts = PromptBuilder(max(1024, context - 2048), salt=f"s{seed}")
    for i in range(len(plan)):
        words = prompts.for_request(plan, i).split()
        prompt_tokens = max(1, len(words))
        output = max(1, min(int(plan.output_tokens[i]), context - prompt_tokens))
        engine = engines[i % len(engines)]
        engine.submit(
            SimRequest(
                f"r{i}",
                float(plan.arrival_s[i]),
                prompt_tokens,
                output,
                output,
                block_hashes=prompt_block_hashes(words, engine.block_size),
            )
        )
    for engine in engines:
        engine.run_to_completion()
    return engines
