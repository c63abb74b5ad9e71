"""Threshold rules over telemetry samples: pure, with hysteresis, returning crossings.

Rules (everything that decides when an alarm is raised or cleared lives here):

- An alarm is identified by (rule, subject): ``memory`` for each GPU with dedicated memory
  (subject ``gpuN``) and for host memory (subject ``host``; called unified memory when the GPU
  shares it), ``temperature`` and ``gpu_lost`` and ``xid`` for each GPU.
- A level rule raises when the value goes strictly above its raise line and clears only when it
  falls strictly below its clear line, which sits lower: a value hovering at the raise line raises
  once and stays raised. Defaults follow the source project's alert rules: memory > 95 %
  (clears below 90 %), temperature > 85 °C (clears below 80 °C).
- A missing reading (unsupported, failed this time, GPU lost) changes nothing.
- ``gpu_lost`` raises while the GPU's health is not "ok" and clears when it answers again.
- ``xid`` raises on the first Xid error of a GPU and clears after ``xid_quiet_s`` without one;
  further Xids while raised only push the clearing back.
- ``evaluate`` is a function of (sample, state, config): no clock but the sample's own ``ts``, no
  I/O. The engine turns each raised crossing into an escalation and each cleared one into its
  resolution; ``Crossing.key`` names the escalation across both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msgspec import Struct

from pixels_daemon.telemetry.sampler import GpuSample, TelemetrySample
from protocol.messages import Severity

Rule = Literal["memory", "temperature", "gpu_lost", "xid"]
Direction = Literal["raised", "cleared"]

SEVERITY: dict[Rule, Severity] = {
    "memory": "high",
    "temperature": "high",
    "gpu_lost": "critical",
    "xid": "high",
}


class ThresholdConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The lines. ``None`` turns a level rule off; the flags turn the event rules off."""

    memory_raise_ratio: float | None = 0.95
    #: 5 points under the raise line: a job filling memory to ~95 % and freeing a little does not
    #: reopen the escalation each sample; clearing needs real headroom back.
    memory_clear_ratio: float = 0.90
    temperature_raise_celsius: float | None = 85.0
    #: 5 °C under: temperature swings a few degrees with load within seconds.
    temperature_clear_celsius: float = 80.0
    gpu_lost: bool = True
    xid: bool = True
    #: An hour without a new Xid clears the alarm; Xids from a failing GPU usually come in bursts.
    xid_quiet_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.memory_raise_ratio is not None:
            if not 0.0 < self.memory_raise_ratio <= 1.0:
                raise ValueError(
                    f"memory_raise_ratio must be in (0, 1], got {self.memory_raise_ratio}"
                )
            if not 0.0 <= self.memory_clear_ratio < self.memory_raise_ratio:
                raise ValueError(
                    f"memory_clear_ratio ({self.memory_clear_ratio}) must be >= 0 and below "
                    f"memory_raise_ratio ({self.memory_raise_ratio})"
                )
        if (
            self.temperature_raise_celsius is not None
            and self.temperature_clear_celsius >= self.temperature_raise_celsius
        ):
            raise ValueError(
                f"temperature_clear_celsius ({self.temperature_clear_celsius}) must be below "
                f"temperature_raise_celsius ({self.temperature_raise_celsius})"
            )
        if self.xid_quiet_s <= 0:
            raise ValueError(f"xid_quiet_s must be > 0, got {self.xid_quiet_s}")


DEFAULT_THRESHOLDS = ThresholdConfig()


class Alarm(Struct, frozen=True, kw_only=True):
    """A raised alarm: since when, and (for xid) when the last event came."""

    rule: Rule
    subject: str
    since: float
    last_event: float


class ThresholdState(Struct, frozen=True, kw_only=True):
    """The alarms currently raised. Start from ``ThresholdState()``."""

    alarms: tuple[Alarm, ...] = ()

    def active(self, rule: Rule, subject: str) -> Alarm | None:
        return next((a for a in self.alarms if a.rule == rule and a.subject == subject), None)


class Crossing(Struct, frozen=True, kw_only=True):
    """An alarm raised or cleared by one sample."""

    rule: Rule
    subject: str  # "gpu0", "gpu1", ... or "host"
    direction: Direction
    value: float
    threshold: float
    ts: float
    severity: Severity
    message: str  # one line, for the escalation and the log
    uuid: str | None = None  # the GPU's, when the subject is a GPU

    @property
    def key(self) -> str:
        """Stable across raise and clear: the id of the escalation this alarm owns."""
        return f"telemetry:{self.rule}:{self.subject}"


def evaluate(
    sample: TelemetrySample,
    state: ThresholdState,
    config: ThresholdConfig = DEFAULT_THRESHOLDS,
) -> tuple[ThresholdState, tuple[Crossing, ...]]:
    """Apply every rule to one sample; return the new state and the crossings, in rule order."""
    run = _Evaluation(sample, state, config)
    names = {g.index: g.name for g in sample.info.gpus}
    for gpu in sample.gpus:
        subject = f"gpu{gpu.index}"
        label = f"GPU {gpu.index} ({names.get(gpu.index, 'unknown')})"
        if config.gpu_lost:
            run.gpu_lost(gpu, subject, label)
        used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
        run.level(
            _Level("memory", subject, f"{label} memory used", _PERCENT, gpu.uuid),
            used / total if used is not None and total else None,
            config.memory_raise_ratio,
            config.memory_clear_ratio,
        )
        run.level(
            _Level("temperature", subject, f"{label} temperature", _CELSIUS, gpu.uuid),
            gpu.temperature_celsius,
            config.temperature_raise_celsius,
            config.temperature_clear_celsius,
        )
        if config.xid:
            run.xid(gpu, subject, label)
    if sample.host is not None:
        what = "unified memory (CPU + GPU) used" if sample.unified else "host memory used"
        run.level(
            _Level("memory", "host", what, _PERCENT),
            sample.host.used_ratio,
            config.memory_raise_ratio,
            config.memory_clear_ratio,
        )
    return ThresholdState(alarms=tuple(run.alarms.values())), tuple(run.crossings)


class _Unit:
    def __init__(self, scale: float, suffix: str, digits: int) -> None:
        self.scale, self.suffix, self.digits = scale, suffix, digits

    def show(self, value: float) -> str:
        return f"{value * self.scale:.{self.digits}f}{self.suffix}"


_PERCENT = _Unit(100, " %", 1)
_CELSIUS = _Unit(1, " °C", 0)


@dataclass(frozen=True, slots=True)
class _Level:
    """What a level rule watches and how to say it."""

    rule: Rule
    subject: str
    describe: str
    unit: _Unit
    uuid: str | None = None


class _Evaluation:
    """One sample's pass over the rules: the alarms as they change, and the crossings so far."""

    def __init__(self, sample: TelemetrySample, state: ThresholdState, config: ThresholdConfig):
        self.sample = sample
        self.config = config
        self.alarms: dict[tuple[Rule, str], Alarm] = {(a.rule, a.subject): a for a in state.alarms}
        self.crossings: list[Crossing] = []

    def raise_(self, rule: Rule, subject: str, since: float | None = None) -> None:
        ts = self.sample.ts
        self.alarms[rule, subject] = Alarm(
            rule=rule, subject=subject, since=ts if since is None else since, last_event=ts
        )

    def cross(
        self,
        what: tuple[Rule, str, str | None],
        direction: Direction,
        value: float,
        threshold: float,
        message: str,
    ) -> None:
        rule, subject, uuid = what
        self.crossings.append(
            Crossing(
                rule=rule,
                subject=subject,
                direction=direction,
                value=value,
                threshold=threshold,
                ts=self.sample.ts,
                severity=SEVERITY[rule],
                message=message,
                uuid=uuid,
            )
        )

    def level(
        self, watch: _Level, value: float | None, raise_at: float | None, clear_at: float
    ) -> None:
        if value is None or raise_at is None:
            return
        what = (watch.rule, watch.subject, watch.uuid)
        active = (watch.rule, watch.subject) in self.alarms
        show = watch.unit.show
        if not active and value > raise_at:
            self.raise_(watch.rule, watch.subject)
            text = f"{watch.describe} {show(value)} (above {show(raise_at)})"
            self.cross(what, "raised", value, raise_at, text)
        elif active and value < clear_at:
            del self.alarms[watch.rule, watch.subject]
            text = f"{watch.describe} back to {show(value)} (below {show(clear_at)})"
            self.cross(what, "cleared", value, clear_at, text)

    def gpu_lost(self, gpu: GpuSample, subject: str, label: str) -> None:
        active = ("gpu_lost", subject) in self.alarms
        what: tuple[Rule, str, str | None] = ("gpu_lost", subject, gpu.uuid)
        if gpu.health != "ok" and not active:
            self.raise_("gpu_lost", subject)
            why = "needs a reset" if gpu.health == "reset_required" else "is lost"
            text = f"{label} {why} (NVML): its work has stopped; reset the GPU or reboot"
            self.cross(what, "raised", 1, 1, text)
        elif gpu.health == "ok" and active:
            del self.alarms["gpu_lost", subject]
            self.cross(what, "cleared", 0, 1, f"{label} answers NVML again")

    def xid(self, gpu: GpuSample, subject: str, label: str) -> None:
        alarm = self.alarms.get(("xid", subject))
        what: tuple[Rule, str, str | None] = ("xid", subject, gpu.uuid)
        if gpu.xids:
            if alarm is None:
                self.raise_("xid", subject)
                codes = ", ".join(str(x) for x in gpu.xids)
                text = f"{label} reported Xid {codes} (see dmesg for the driver's detail)"
                self.cross(what, "raised", gpu.xids[-1], 0, text)
            else:
                self.raise_("xid", subject, since=alarm.since)  # push the clearing back
        elif alarm is not None and self.sample.ts - alarm.last_event >= self.config.xid_quiet_s:
            del self.alarms["xid", subject]
            quiet = self.config.xid_quiet_s / 60
            self.cross(what, "cleared", 0, 0, f"{label} reported no Xid for {quiet:.0f} min")
