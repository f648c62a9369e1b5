"""Targets: something to send load to, started by perfgate or already running.

:class:`TargetPool` is the session-level owner of engine servers. It boots one
server per (engine configuration, model), keeps it while consecutive tests use
it, and stops it before booting the next, so a small box never holds two
engines at once. Provisioned venvs and built models are cached across sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from perfgate._http import probe_version
from perfgate.config.matrix import EngineConfig, ModelSpec
from perfgate.engines import (
    EXTERNAL_CAPABILITIES,
    EngineCapabilities,
    ModelRef,
    get_adapter,
)
from perfgate.engines.endpoint import (
    EndpointAuth,
    EndpointError,
    EndpointOptions,
    EndpointProbe,
    choose_model,
    endpoint_auth,
    metrics_note,
    probe,
)
from perfgate.engines.provision import (
    EngineVenv,
    InstallOptions,
    ensure_engine_venv,
    existing_environment,
    installed_version,
    stderr_progress,
)
from perfgate.engines.server import EngineServer, ServerError
from perfgate.engines.specs import spec_version
from perfgate.schema.files import slug
from perfgate.schema.result import EngineInfo, Software
from perfgate.schema.status import FaultClass


@dataclass
class Target:
    """A ready endpoint plus what we know about the engine behind it."""

    base_url: str
    model: ModelRef
    engine: EngineInfo
    server: EngineServer | None = None  # None for an external endpoint
    engine_cpus: tuple[int, ...] = ()  # cores the engine is pinned to (client avoids them)
    capabilities: EngineCapabilities = EXTERNAL_CAPABILITIES
    software: Software | None = None  # the engine's stack (None: an endpoint perfgate did not start)
    auth: EndpointAuth | None = field(default=None, repr=False)  # an endpoint's auth header (its repr hides the value)
    # What a 429/503 does: count | retry | fail (perfgate.measure.metrics.THROTTLE_POLICIES). An engine perfgate
    # started has no gateway in front of it: there a 429/503 is its fault; an endpoint's are counted.
    throttle: str = "fail"
    server_url: str | None = None  # an endpoint's base for /metrics, /tokenize, /version (None: base_url)
    extra: dict[str, str] | None = None  # an endpoint's extra headers (--perf-endpoint-header), on every request

    @property
    def server_base(self) -> str:
        """Where the server routes are (/metrics, /tokenize, /version, cache reset): behind KServe, not the
        OpenAI routes' base."""
        return self.server_url or self.base_url

    @property
    def headers(self) -> dict[str, str] | None:
        """Headers every request to this target carries (an endpoint's extra headers and auth), or None."""
        out = {**(self.extra or {}), **(self.auth.headers() if self.auth is not None else {})}
        return out or None


def software_stack(venv: EngineVenv | None, model: ModelRef, engine: EngineConfig, nvml=None) -> Software:
    """The engine venv's stack (torch, CUDA runtime, flashinfer), the driver (NVML, when present) and the
    model's revision in the local HF cache; nothing is downloaded."""
    from perfgate.engines import gpus, hfcache

    sw = venv.software if venv else {}
    driver = cuda_driver = None
    try:
        nv = gpus.load_nvml(nvml)
    except gpus.NvmlUnavailable:
        nv = None
    if nv is not None:
        try:
            driver, cuda_driver = gpus.driver_versions(nv)
        finally:
            gpus.shutdown(nv)
    return Software(python=sw.get("python"), torch=sw.get("torch"), torch_cuda=sw.get("torch_cuda"),
                    flashinfer=sw.get("flashinfer"), installer=sw.get("installer"), driver=driver,
                    cuda_driver=cuda_driver, model_revision=hfcache.model_revision(model.path, revision=model.revision),
                    model_weights=hfcache.weights_digest(model.path, revision=model.revision))


def resolve_model(model: ModelSpec, cache_dir: Path) -> ModelRef:
    """Build a tiny recipe model into the cache, or pass a path/HF id through."""
    if model.recipe is not None:
        from perfgate.engines.tinymodel import ensure_tiny_model

        path = str(ensure_tiny_model(model.recipe, cache_dir / "models"))
    else:
        assert model.path is not None
        path = model.path
    return model.resolved(path)


def _check_reachable(base_url: str, auth: EndpointAuth | None = None,
                     headers: dict[str, str] | None = None) -> EndpointProbe:
    """An endpoint we did not start must answer /v1/models (or /health) before we load it; a failure names its
    cause (connection refused, a /v1 URL, 401/403) in one line."""
    found = probe(base_url, auth, headers=headers)
    if found.problem:
        raise EndpointError(found.problem)
    return found


class TargetPool:
    """Owns the engine servers of a session.

    Boots one server per (engine configuration, model) and keeps up to
    ``capacity`` of them alive (1 by default, so a small box never holds two
    engines at once; 2 for a live A/B, whose sides alternate). The least
    recently used server is stopped before another boots.
    """

    def __init__(self, cache_dir: Path, log_dir: Path, capacity: int = 1, endpoint_model: str | None = None,
                 endpoint_auth_env: str | None = None, progress: Callable[[str], None] | None = stderr_progress,
                 endpoint_options: EndpointOptions | None = None):
        self.progress = progress  # where install and boot progress lines go (the plugin: the terminal)
        self.cache_dir = cache_dir
        self.log_dir = log_dir
        self.capacity = max(1, capacity)
        self.endpoint_model = endpoint_model  # the model name an external endpoint serves (else found out)
        self.endpoint_auth_env = endpoint_auth_env  # the variable holding its token (else $PERFGATE_ENDPOINT_TOKEN)
        self.endpoint_options = endpoint_options or EndpointOptions()  # server routes' base, headers, throttling
        self.notes: list[str] = []  # what the pool decided on the user's behalf; the session shows them
        self._live: dict[tuple, Target] = {}  # insertion order = least recently used first
        self._failed: dict[tuple, tuple[str, FaultClass]] = {}  # the first line and fault class of a failed boot

    def get(self, engine: EngineConfig, model: ModelSpec, fresh: bool = False) -> Target:
        """A ready target for (engine, model); ``fresh`` restarts it (a new boot)."""
        key = (engine, model)
        if key in self._failed:  # don't pay a 10-minute boot timeout once per test
            line, kind = self._failed[key]
            raise ServerError(f"{engine.id}: not retried, boot failed earlier in this session: {line}", kind=kind)
        current = self._live.pop(key, None)
        if current is not None:
            server = current.server
            if server is not None and server.proc is not None and server.proc.poll() is not None:
                rc = server.proc.returncode
                server.stop()  # reap whatever is left of the group
                self._failed[key] = (f"server exited with code {rc} during the run", FaultClass.ENGINE_CRASHED)
                raise ServerError(f"{engine.id}: server exited with code {rc} during the run", server.log_path,
                                  kind=FaultClass.ENGINE_CRASHED)
            if not fresh:
                self._live[key] = current
                return current
            self._stop(current)
        while len(self._live) >= self.capacity:
            self._stop(self._live.pop(next(iter(self._live))))
        try:
            target = self._start(engine, model)
        except Exception as exc:
            self._failed[key] = (str(exc).splitlines()[0],
                                 exc.kind if isinstance(exc, ServerError) else FaultClass.SERVER_ERROR)
            raise
        self._live[key] = target
        return target

    def _start(self, engine: EngineConfig, model: ModelSpec) -> Target:
        if engine.kind == "external":
            assert engine.base_url
            opts = self.endpoint_options
            base, server = opts.bases(engine.base_url)
            extra = dict(opts.headers) or None
            auth = endpoint_auth(self.endpoint_auth_env)
            found = _check_reachable(base, auth, extra)
            # The name it serves: as given, else the matrix model's HF id or key if listed (never another model).
            name, note = choose_model(found, self.endpoint_model, (model.path, model.name))
            if note:
                self.notes.append(note)
            ref = ModelRef(name, model.path or name)
            hdrs = {**(extra or {}), **(auth.headers() if auth else {})}
            missing = metrics_note(server or base, hdrs)
            if missing and missing not in self.notes:  # one visible line, not an empty server_metrics in silence
                self.notes.append(missing)
            info = EngineInfo(name="external", version=probe_version(server or base, headers=hdrs or None),
                              base_url=engine.base_url)
            return Target(base, ref, info, auth=auth, throttle=opts.throttle, server_url=server, extra=extra)
        adapter = get_adapter(engine.kind)
        venv: EngineVenv | None = None
        python = Path("python")
        if engine.python:
            venv = existing_environment(engine.spec, engine.python)
            python = venv.python
        elif engine.spec:
            venv = ensure_engine_venv(engine.spec, self.cache_dir, options=InstallOptions.from_config(engine),
                                      progress=self.progress)
            python = venv.python
        ref = resolve_model(model, self.cache_dir)
        log_path = self.log_dir / f"{slug(engine.id)}--{slug(model.name)}.log"
        server = EngineServer(adapter, engine, ref, python, log_path, progress=self.progress).start()
        assert server.plan is not None
        version = server.version or (installed_version(venv, adapter.distribution) if venv and adapter.distribution else None)
        if venv and engine.spec and version is None:
            version = spec_version(engine.spec)  # None for `name @ URL`: the engine's own answer was missing
        info = EngineInfo(
            name=adapter.name, version=version, spec=engine.spec, command=server.plan.command,
            # The plan's flags: the model's serving defaults, engine_args and the TP size as passed, so they are
            # in the fingerprint (a TP-2 run never stands in for a TP-1 baseline).
            env=server.recorded_env, flags=list(server.plan.flags),
            cold_start_s=server.cold_start_s, base_url=server.base_url, log_path=str(log_path),
        )
        software = software_stack(venv, ref, engine) if venv is not None else None
        return Target(server.base_url, ref, info, server, engine_cpus=engine.cpus, capabilities=adapter.capabilities,
                      software=software)

    @staticmethod
    def _stop(target: Target) -> None:
        if target.server is not None:
            target.server.stop()

    def take_notes(self) -> list[str]:
        """The notes gathered since the last call (for the case that caused them)."""
        notes, self.notes = self.notes, []
        return notes

    def quiesce_others(self, active: Target) -> None:
        """Pause every live server but ``active`` (resumed if it was paused): a live A/B measures one side
        while the other uses no CPU or GPU at all."""
        for target in self._live.values():
            if target.server is None:
                continue
            if target is active:
                target.server.resume()
            else:
                target.server.pause()

    def resume_all(self) -> None:
        for target in self._live.values():
            if target.server is not None:
                target.server.resume()

    def release(self) -> None:
        """Stop every server perfgate started."""
        while self._live:
            self._stop(self._live.pop(next(iter(self._live))))
