"""The commented ``providers.yaml`` that ``optiinfra init`` writes.

It validates as written (only the ``local`` provider is enabled, so no credential
variable is required) and mentions every field of the schema; a test keeps it so.
"""

EXAMPLE_CONFIG = """\
# providers.yaml: what OptiInfra watches and what it may change.
#
# Check it with `optiinfra validate providers.yaml`: every problem is reported with
# its file, line and field. Durations accept 30s, 15m, 1.5h, 1d or a number of seconds.
# Secrets never go in this file: a provider names the ENVIRONMENT VARIABLES that hold
# them, and OptiInfra reads those variables when it needs them.

# File format version. Only 1 exists.
version: 1

# Tenants (the customers whose fleets OptiInfra looks after). The tenant `default`
# always exists, even when it is not listed; providers, SLOs and policies that do not
# name a tenant belong to it.
tenants:
  - name: default                 # unique; lowercase letters, digits, - _ .
    display_name: My fleet        # shown to people in reports and the UI
    budget_usd_per_month: 5000    # expected monthly spend, US dollars (optional)
    labels:                       # free-form labels copied into reports
      team: inference

# Providers: where data comes from (and, later, where approved changes are applied).
# Each one is collected in parallel every `interval`; one that fails or times out never
# fails the others. Fields:
#   name            unique; recorded on every sample as `provider`
#   kind            which adapter reads it (`optiinfra validate` lists the valid kinds)
#   enabled         false keeps the entry but skips it; a disabled provider's kind
#                   and credential variables are not checked until it is enabled
#   tenant          the tenant that owns these resources (default: default)
#   region          region or site, recorded on every sample
#   prometheus_url  a PromQL API (Prometheus, Thanos, Mimir, VictoriaMetrics...)
#   dcgm_url        a DCGM exporter's /metrics endpoint, for NVIDIA GPU metrics
#   metrics_urls    /metrics endpoints scraped directly (vLLM, TGI, SGLang servers)
#   credentials     credential name -> NAME of the environment variable holding it
#   interval        how often to collect (default 15m)
#   timeout         how long one collection may take (default 60s)
#   retries         retries of a failed collection, with backoff (default 2)
#   labels          extra labels added to every sample
#   options         adapter-specific settings, checked by that adapter
#   quality         kind quality only: golden-set probes, sampled interactions, judge
#   actuator        how approved changes are applied here (docs/actuators.md)
providers:
  # This machine: CPU and memory through psutil, every NVIDIA GPU through NVML.
  - name: local
    kind: local
    enabled: true
    interval: 15m
    timeout: 60s
    retries: 2

  # The entries below show other kinds of provider. They are commented out because
  # their adapters arrive in later releases: `optiinfra validate` lists the kinds this
  # install knows, and reports an unknown kind even in a disabled entry.
  #
  # Any fleet that already has Prometheus (and the DCGM exporter for its GPUs).
  # - name: on-prem
  #   kind: prometheus
  #   enabled: false
  #   tenant: default
  #   region: dc-1
  #   prometheus_url: http://prometheus.internal:9090
  #   dcgm_url: http://gpu-node-1.internal:9400/metrics
  #   metrics_urls:
  #     - http://vllm-1.internal:8000/metrics
  #   interval: 5m
  #   timeout: 30s
  #   labels:
  #     environment: production
  #   options: {}
  #   actuator:                 # where approved plans are rolled out (docs/rollout.md)
  #     kind: kubernetes
  #     options: {namespace: inference, container: vllm}
  #
  # AWS: Cost Explorer, EC2 spot prices and inventory. Credentials by variable name.
  # - name: aws-prod
  #   kind: aws
  #   enabled: false
  #   region: us-east-1
  #   credentials:
  #     access_key_id: AWS_ACCESS_KEY_ID
  #     secret_access_key: AWS_SECRET_ACCESS_KEY
  #   options:
  #     cost_explorer: true
  #
  # RunPod: pods, prices and billing through its API key.
  # - name: runpod
  #   kind: runpod
  #   enabled: false
  #   credentials:
  #     api_key: RUNPOD_API_KEY
  #   interval: 15m
  #
  # Answer quality (docs/quality.md): a golden set of questions with reference answers
  # sent to each deployment's OpenAI-compatible endpoint, and sampled real interactions,
  # scored by exact match, token F1 and, optionally, an LLM judge.
  # - name: answer-quality
  #   kind: quality
  #   enabled: false
  #   interval: 15m
  #   timeout: 120s
  #   credentials:
  #     vllm_key: VLLM_API_KEY        # the variable's NAME
  #     judge_key: GROQ_API_KEY
  #   quality:
  #     golden_set: golden.jsonl      # .jsonl, .yaml or .yml; relative to the working dir
  #     probes_per_run: 50            # items per target per run; later runs take the next
  #     max_tokens: 32                # answers are short
  #     system_prompt: Answer with the answer only.
  #     concurrency: 8                # requests in flight at once (probes and judge)
  #     request_timeout: 30s
  #     targets:
  #       - deployment: chat          # recorded on its quality events
  #         base_url: http://vllm-1.internal:8000/v1
  #         model: meta-llama/Llama-3.1-8B-Instruct   # default: first of GET /models
  #         api: chat                 # or completions
  #         credential: vllm_key      # an entry of credentials above (optional)
  #         config_id: ""             # used when the server sends no x-optiinfra-config-id
  #     interactions:                 # sampled real traffic (optional)
  #       path: interactions.jsonl    # or url: https://... ({start} {end} = the window)
  #       format: auto                # auto, optiinfra, otel or langfuse
  #       deployment: chat            # for records that name none
  #       sample_rate: 0.1            # share of the window's interactions scored
  #       max_per_run: 200
  #       credential: null            # for url: an entry of credentials above
  #       auth: bearer                # or basic (value user:password)
  #     judge:                        # optional LLM judge; provider none: no judge score
  #       provider: groq              # none, groq or openai-compatible
  #       model: llama-3.3-70b-versatile
  #       base_url: null              # required for openai-compatible
  #       credential: judge_key
  #       timeout: 30s
  #       max_per_run: 100            # most answers graded per run

# Service-level objectives. A rollout step that breaks one is rolled back.
# `deployment: "*"` means every deployment of the tenant. All targets are optional.
slos:
  - tenant: default
    deployment: "*"
    ttft_p95_seconds: 0.5         # 95th-percentile time to first token
    itl_p95_seconds: 0.05         # 95th-percentile inter-token latency
    e2e_p95_seconds: 10           # 95th-percentile end-to-end request latency
    max_error_rate: 0.01          # largest share of failed requests (0-1)

# Policies: what OptiInfra may propose for a tenant (one policy per tenant).
policies:
  - tenant: default
    max_quality_drop: 0.10        # largest relative answer-quality drop accepted
    forbidden_changes: []         # any of: spot_migration, right_size,
                                  # reserved_capacity, idle_shutdown, engine_tuning,
                                  # quantization, parallelism, autoscaling, consolidation
    budget_usd_per_month: 5000    # plans must keep monthly spend under this (optional)
    max_rollout_percent: 100      # largest share of a deployment a rollout reaches

# Who writes the explanations of recommendations. Numbers (savings, latency, risk)
# always come from code; the LLM only explains them.
#   provider      none (template text), groq, or openai-compatible
#   model         model name (default: the client's default)
#   base_url      API base URL; required for openai-compatible
#   api_key_env   NAME of the variable holding the API key
#                 (groq: default GROQ_API_KEY; openai-compatible: only if it needs one)
#   timeout       per-request timeout
llm:
  provider: none
  timeout: 30s
  # provider: groq
  # model: llama-3.3-70b-versatile
  # api_key_env: GROQ_API_KEY
  #
  # provider: openai-compatible
  # base_url: http://localhost:8000/v1
  # model: my-model

# The optimize flow (agents and coordinator): how often it runs when served, which
# recent window of serving metrics it analyses, and when agents speak up.
#   interval                  how often the served optimize deployment runs
#   window                    recent window of serving metrics the agents read
#   idle_min_observed         engine metrics needed before a deployment is called idle
#   min_saving_usd_per_month  smallest monthly saving worth proposing
#   approval                  pause for a person's answer: auto (runs of a deployment),
#                             wait (every run) or skip (never; plans stay pending)
#   approval_timeout          how long a paused run waits; no answer counts as rejected
optimize:
  interval: 1h
  window: 1h
  idle_min_observed: 10m
  min_saving_usd_per_month: 25
  approval: auto
  approval_timeout: 24h

# Store URLs. OPTIINFRA_METRICS_URL, OPTIINFRA_STATE_URL and OPTIINFRA_MEMORY_URL take
# precedence over these; left out, embedded stores under OPTIINFRA_HOME (~/.optiinfra)
# are used and no server is needed.
stores: {}
  # metrics_url: clickhouse://clickhouse.internal:8123/optiinfra   # or chdb:///path
  # state_url: postgresql+psycopg://optiinfra@db.internal/optiinfra  # or sqlite:///path
  # memory_url: http://qdrant.internal:6333                        # or qdrant:///path
"""
