"""``assay.init`` and the ``Run`` it returns."""

from __future__ import annotations

import atexit
import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from assay import _credentials, protocol
from assay._errors import ConfigurationError, ConnectionFailedError, InvalidValueError
from assay._sender import Rows, Sender, SenderOptions
from assay._spool import Spool, default_root
from assay._values import check_document, flatten_metrics

log = logging.getLogger("assay")

ResumeMode = Literal["never", "allow", "must"] | bool | None
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class _Document(MutableMapping[str, Any]):
    """A dict whose updates reach the server with the next batch."""

    def __init__(self, run: Run, what: str, initial: Mapping[str, Any]) -> None:
        self._run = run
        self._what = what
        self._data: dict[str, Any] = dict(initial)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"keys cannot be removed from run.{self._what}; set them to None instead")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{self._what.capitalize()}({self._data!r})"

    def update(self, *args: Any, **kwargs: Any) -> None:
        changes = dict(*args, **kwargs)
        check_document(changes, self._what)
        self._data.update(changes)
        self._run._queue_document(self._what, changes)


class Run:
    """One training run, streaming its metrics to an assay server.

    Create it with ``assay.init``. ``log`` adds a row of metrics at a step and
    returns at once; a background thread delivers the rows. Use the run as a
    context manager, or call ``finish``, to mark it finished (or failed).

    Attributes:
        id: the run id, unique within its project.
        project: the project name.
        name: the display name.
        config: hyperparameters; item updates reach the server.
        summary: values that override the last logged value of a metric.
    """

    def __init__(
        self,
        project: str,
        run_id: str,
        name: str | None,
        config: Mapping[str, Any],
        tags: list[str],
        group: str | None,
        notes: str | None,
        resume: str,
        credentials: _credentials.Credentials | None,
        spool_root: Path,
        options: SenderOptions,
    ) -> None:
        self.project = project
        self.id = run_id
        self.name = name or run_id
        self.tags = tags
        self.group = group
        self._lock = threading.Lock()
        self._rows: Rows = []
        self._config_changes: dict[str, Any] = {}
        self._summary_changes: dict[str, Any] = {}
        self._known_keys: set[str] = set()
        self._next_step = 0
        self._finished = False
        self.session = secrets.randbits(63)
        self.config = _Document(self, "config", config)
        self.summary = _Document(self, "summary", {})
        hello = {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": project,
            "session": self.session,
            "resume": resume,
            "run": {
                "id": run_id,
                "name": name,
                "config": dict(config),
                "tags": tags,
                "group": group,
                "notes": notes,
            },
        }
        self.spool = Spool.for_run(spool_root, project, run_id, self.session)
        self._sender = Sender(self._take, hello, credentials, self.spool, options)

    @property
    def offline(self) -> bool:
        return self._sender.credentials is None

    @property
    def state(self) -> str | None:
        """The state the server gave the run when it finished, else None."""
        return self._sender.final_state

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` at ``step``; the step counts up from the highest so far.

        A step lower than earlier ones is stored as given. Logging a metric
        again at the same step keeps the later value. A call without values,
        such as ``log({})`` or ``log({"a": {}})``, logs nothing and leaves the
        step counter as it was, also when it passes ``step=``: the counter
        follows the steps of logged rows only, as it does on the server when
        a run is resumed. A bad ``step`` still raises.

        Raises ``InvalidValueError``, logging nothing of the call, for names or
        values that can never be stored, for keys that flatten to the same
        name (``{"a/b": 1.0, "a": {"b": 2.0}}``) and for keys that leave an
        empty segment in the name (``{"a": {"": 1.0}}``, ``{"x/": 1.0}``).
        Raises nothing for network trouble.
        """
        flat = flatten_metrics(metrics, self._known_keys)
        if step is not None and (
            not isinstance(step, int)
            or isinstance(step, bool)
            or not 0 <= step <= protocol.MAX_STEP
        ):
            raise InvalidValueError(
                f"step must be an integer between 0 and {protocol.MAX_STEP}, got {step!r}"
            )
        now = time.time()
        with self._lock:
            if self._finished:
                raise RuntimeError(f"run {self.id} is finished; call assay.init() for a new run")
            if not flat:
                return
            if step is None:
                step = self._next_step
                if step > protocol.MAX_STEP:
                    raise InvalidValueError(
                        f"invalid step: the next step would be {step}, past the largest step "
                        f"{protocol.MAX_STEP}; pass step= with a lower step"
                    )
            if step >= self._next_step:
                self._next_step = step + 1
            self._rows.append((step, now, flat))
            if len(self._rows) >= self._sender.options.batch_rows:
                self._sender.wake.set()
            else:
                self._sender.queued()

    def finish(self, exit_code: int = 0, timeout: float = 30.0) -> None:
        """Deliver what is left and mark the run finished (exit code 0) or failed.

        Waits up to ``timeout`` seconds for the server to acknowledge every
        batch; what remains after that is saved in the spool directory for
        ``assay sync``. Raises ``InvalidValueError``, and leaves the run
        running, for an exit code that is not an integer within 64 bits or a
        timeout that is not a finite number of seconds of 0 or more.
        """
        if (
            not isinstance(exit_code, int)
            or isinstance(exit_code, bool)
            or not -(2**63) <= exit_code < 2**63
        ):
            raise InvalidValueError(
                "exit_code must be an integer within 64 bits, such as 0 or 1, "
                f"got {exit_code!r:.60}"
            )
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 <= timeout < float("inf")
        ):
            raise InvalidValueError(
                f"timeout must be a finite number of seconds of 0 or more, got {timeout!r:.60}"
            )
        with self._lock:
            if self._finished:
                return
            self._finished = True
        atexit.unregister(self._at_exit)
        self._sender.request_finish(exit_code, timeout)
        self._sender.join(timeout + 5.0)
        if self.offline:
            log.warning(
                "assay run %s was logged offline to %s; upload it with `assay sync %s`",
                self.id,
                self.spool.directory,
                self.spool.directory,
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def __repr__(self) -> str:
        return f"<assay.Run {self.project}/{self.id} name={self.name!r}>"

    def _take(self) -> tuple[Rows, dict[str, Any], dict[str, Any]]:
        with self._lock:
            rows, self._rows = self._rows, []
            config, self._config_changes = self._config_changes, {}
            summary, self._summary_changes = self._summary_changes, {}
        return rows, config, summary

    def _queue_document(self, what: str, changes: dict[str, Any]) -> None:
        with self._lock:
            target = self._config_changes if what == "config" else self._summary_changes
            target.update(changes)
        self._sender.queued()

    def _start(self, wait: float, resume: bool) -> None:
        self._sender.start()
        atexit.register(self._at_exit)
        if self.offline:
            return
        if resume:
            # The step counter continues from the server's, so wait for the welcome.
            self._sender.first_attempt.wait(wait)
            if self._sender.welcome is None and self._sender.fatal is None:
                self._abandon()
                raise ConnectionFailedError(
                    f"could not reach the server within {wait:.0f} s to resume run {self.id!r}"
                )
        else:
            self._sender.first_attempt.wait(wait)
        fatal = self._sender.end_start()
        if fatal is not None:
            self._abandon()
            raise fatal
        if self._sender.welcome is not None:
            self._next_step = int(self._sender.welcome.get("next_step", 0))

    def _abandon(self) -> None:
        with self._lock:
            self._finished = True
        atexit.unregister(self._at_exit)
        self._sender.abandon()

    def _at_exit(self) -> None:
        self.finish(exit_code=1 if _uncaught.happened else 0)


class _UncaughtExceptions:
    """Remembers whether the program is ending because of an uncaught exception."""

    def __init__(self) -> None:
        self.happened = False
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        previous = sys.excepthook

        def hook(
            kind: type[BaseException], value: BaseException, trace: TracebackType | None
        ) -> None:
            if not issubclass(kind, KeyboardInterrupt | SystemExit):
                self.happened = True
            previous(kind, value, trace)

        sys.excepthook = hook
        self.installed = True


_uncaught = _UncaughtExceptions()


def init(
    project: str,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
    group: str | None = None,
    notes: str | None = None,
    id: str | None = None,
    resume: ResumeMode = None,
    mode: Literal["online", "offline"] = "online",
    server: str | None = None,
    api_key: str | None = None,
    spool_dir: str | Path | None = None,
    init_timeout: float = 10.0,
    settings: SenderOptions | None = None,
) -> Run:
    """Start a run and return it.

    Arguments:
        project: project name: letters, digits, ``.``, ``_`` and ``-``.
        name: display name; defaults to the run id.
        config: hyperparameters, any JSON value (NaN and infinities allowed).
        tags: labels for filtering.
        group: a group name, such as the sweep the run belongs to.
        notes: free text.
        id: the run id (1 to 64 letters, digits, ``_`` or ``-``); generated if omitted.
        resume: ``"must"`` continues the existing run ``id`` with its history and
            step counter, ``"allow"`` (or True) continues it if it exists and
            creates it otherwise, ``"never"`` (or None, False) fails if it exists.
        mode: ``"online"`` streams to the server; ``"offline"`` writes to the
            spool directory only, for a later ``assay sync``.
        server, api_key: default to ``ASSAY_SERVER`` and ``ASSAY_API_KEY``, then to
            what ``assay login`` stored.
        spool_dir: where batches wait when the server is away; defaults to
            ``ASSAY_SPOOL_DIR`` or ``.assay/spool``.
        init_timeout: seconds to wait for the server before going on in the
            background (or, with resume, before raising).

    Returns:
        The ``Run``. Raises ``AuthenticationError`` or ``ConflictError`` when the
        server rejects the run, and ``InvalidValueError`` for a bad config or an
        argument of the wrong type.
    """
    _check_arguments(project, id, name, group, notes, config, tags)
    resume_mode = _resume_mode(resume)
    if mode not in ("online", "offline"):
        raise ConfigurationError(f"mode must be 'online' or 'offline', got {mode!r}")
    run_id = id or "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    if resume_mode == "must" and id is None:
        raise ConfigurationError("resume='must' needs the id of the run to continue")
    check_document(dict(config or {}), "config")
    credentials = None if mode == "offline" else _credentials.resolve(server, api_key)
    _uncaught.install()
    run = Run(
        project=project,
        run_id=run_id,
        name=name,
        config=config or {},
        tags=list(tags or []),
        group=group,
        notes=notes,
        resume=resume_mode,
        credentials=credentials,
        spool_root=Path(spool_dir) if spool_dir is not None else default_root(),
        options=settings or SenderOptions(),
    )
    run._start(init_timeout, resume=resume_mode != "never")
    return run


def _check_arguments(
    project: object,
    run_id: object,
    name: object,
    group: object,
    notes: object,
    config: object,
    tags: object,
) -> None:
    """Raise ``InvalidValueError`` for an argument of ``init`` of the wrong type.

    The server checks what the text may contain. These checks catch the types
    that would otherwise fail later with a TypeError far from the call.
    """
    if not isinstance(project, str) or not project:
        raise InvalidValueError(
            f"project must be a non-empty string such as 'mnist', got {project!r:.60}"
        )
    for argument, value in (("id", run_id), ("name", name), ("group", group), ("notes", notes)):
        if value is not None and not isinstance(value, str):
            raise InvalidValueError(f"{argument} must be a string or None, got {value!r:.60}")
    if config is not None and not isinstance(config, Mapping):
        raise InvalidValueError(
            f"config must be a mapping of names to values, such as {{'lr': 0.1}}, "
            f"got {config!r:.60}"
        )
    if tags is None:
        return
    if isinstance(tags, str):
        raise InvalidValueError(f"tags must be a list of strings; for one tag pass [{tags!r:.60}]")
    if not isinstance(tags, list | tuple | set | frozenset) or not all(
        isinstance(tag, str) for tag in tags
    ):
        raise InvalidValueError(f"tags must be a list of strings, got {tags!r:.60}")


def _resume_mode(resume: ResumeMode) -> str:
    if resume is None or resume is False:
        return "never"
    if resume is True:
        return "allow"
    if resume in protocol.RESUME_MODES:
        return resume
    raise ConfigurationError(
        f"resume must be 'never', 'allow', 'must', True, False or None, got {resume!r}"
    )
