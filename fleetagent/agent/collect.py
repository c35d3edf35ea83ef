"""Hardware readings: NVML (nvidia-ml-py, ``import pynvml``) per GPU, or CPU/RAM via psutil.

The NVML library is the only external edge here; ``collector_open(nvml=...)`` takes the
module so tests can hand in a fake one. Every per-field call tolerates NVMLError (a field
the GPU does not support reads as None) so one unsupported counter never hides the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psutil

logger = logging.getLogger(__name__)

_MB = 1024 * 1024


@dataclass
class HostReading:
    cpu_percent: float
    ram_used_mb: float
    ram_total_mb: float

    def as_dict(self) -> dict:
        return {"cpu_percent": self.cpu_percent, "ram_used_mb": self.ram_used_mb, "ram_total_mb": self.ram_total_mb}


def host_read() -> HostReading:
    mem = psutil.virtual_memory()
    # interval=None: the CPU share since the previous call (non-blocking; first call reads 0).
    return HostReading(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        ram_used_mb=round((mem.total - mem.available) / _MB, 1),
        ram_total_mb=round(mem.total / _MB, 1),
    )


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str
    vram_total_mb: float

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "uuid": self.uuid, "vram_total_mb": self.vram_total_mb}


@dataclass
class CpuCollector:
    """A host without NVML: no GPUs, CPU and RAM instead."""

    reason: str
    nvml: bool = False
    gpus: list[GpuInfo] = field(default_factory=list)

    @property
    def gpu_model(self) -> str:
        return ""

    def read(self) -> list[dict]:
        return []

    def close(self) -> None:
        return None


class NvmlCollector:
    """Reads every GPU through NVML; one instance per process (nvmlInit once)."""

    nvml = True
    reason = ""

    def __init__(self, lib) -> None:
        self.lib = lib
        self._handles = []
        self.gpus: list[GpuInfo] = []
        self._xid_counts: dict[int, int] = {}
        self._last_xid: dict[int, int] = {}
        self._event_set = None
        count = lib.nvmlDeviceGetCount()
        for index in range(count):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            self._handles.append(handle)
            mem = lib.nvmlDeviceGetMemoryInfo(handle)
            self.gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(lib.nvmlDeviceGetName(handle)),
                    uuid=_text(self._try(lib.nvmlDeviceGetUUID, handle) or ""),
                    vram_total_mb=round(mem.total / _MB, 1),
                )
            )
            self._xid_counts[index] = 0
        self._xid_register()

    @property
    def gpu_model(self) -> str:
        return self.gpus[0].name if self.gpus else ""

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except self.lib.NVMLError:
            return None

    def _xid_register(self) -> None:
        # XIDs are events, not counters, in NVML: count them as they arrive (dcgm-exporter
        # reports the last XID; we report a running count and keep the last value too).
        lib = self.lib
        try:
            self._event_set = lib.nvmlEventSetCreate()
            for handle in self._handles:
                try:
                    lib.nvmlDeviceRegisterEvents(handle, lib.nvmlEventTypeXidCriticalError, self._event_set)
                except lib.NVMLError:
                    continue
        except (lib.NVMLError, AttributeError):
            self._event_set = None

    def _xid_drain(self) -> None:
        if self._event_set is None:
            return
        uuids = {gpu.uuid: gpu.index for gpu in self.gpus}
        for _ in range(64):  # bounded: never spin on a flood of events
            try:
                event = self.lib.nvmlEventSetWait_v2(self._event_set, 0)
            except self.lib.NVMLError:
                return  # timeout: no pending event
            index = None
            handle = getattr(event, "device", None)
            if handle is not None:
                index = uuids.get(_text(self._try(self.lib.nvmlDeviceGetUUID, handle) or ""))
            if index is None:
                index = 0
            self._xid_counts[index] = self._xid_counts.get(index, 0) + 1
            self._last_xid[index] = int(getattr(event, "eventData", 0) or 0)

    def _throttle(self, handle) -> int:
        lib = self.lib
        fn = (
            getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or lib.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        return int(self._try(fn, handle) or 0)

    def _ecc(self, handle) -> int:
        lib = self.lib
        total = 0
        for kind in (lib.NVML_MEMORY_ERROR_TYPE_CORRECTED, lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED):
            value = self._try(lib.nvmlDeviceGetTotalEccErrors, handle, kind, lib.NVML_VOLATILE_ECC)
            total += int(value or 0)
        return total

    def _processes(self, handle) -> list[dict]:
        procs = self._try(self.lib.nvmlDeviceGetComputeRunningProcesses, handle) or []
        out = []
        for proc in procs[:32]:
            used = getattr(proc, "usedGpuMemory", None)
            out.append({"pid": int(proc.pid), "vram_used_mb": round(used / _MB, 1) if used else None})
        return out

    def read(self) -> list[dict]:
        lib = self.lib
        self._xid_drain()
        readings = []
        for gpu, handle in zip(self.gpus, self._handles, strict=True):
            util = self._try(lib.nvmlDeviceGetUtilizationRates, handle)
            mem = self._try(lib.nvmlDeviceGetMemoryInfo, handle)
            power = self._try(lib.nvmlDeviceGetPowerUsage, handle)
            limit = self._try(lib.nvmlDeviceGetEnforcedPowerLimit, handle)
            readings.append(
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "uuid": gpu.uuid,
                    "utilization": float(util.gpu) if util else 0.0,
                    "memory_utilization": float(util.memory) if util else 0.0,
                    "vram_used_mb": round(mem.used / _MB, 1) if mem else 0.0,
                    "vram_total_mb": round(mem.total / _MB, 1) if mem else gpu.vram_total_mb,
                    "temperature_c": _num(self._try(lib.nvmlDeviceGetTemperature, handle, lib.NVML_TEMPERATURE_GPU)),
                    "power_w": round(power / 1000.0, 1) if power is not None else None,  # NVML reports mW
                    "power_limit_w": round(limit / 1000.0, 1) if limit is not None else None,
                    "sm_clock_mhz": _num(self._try(lib.nvmlDeviceGetClockInfo, handle, lib.NVML_CLOCK_SM)),
                    "throttle_reasons": self._throttle(handle),
                    "ecc_errors": self._ecc(handle),
                    "xid_errors": self._xid_counts.get(gpu.index, 0),
                    "last_xid": self._last_xid.get(gpu.index),
                    "processes": self._processes(handle),
                }
            )
        return readings

    def close(self) -> None:
        try:
            if self._event_set is not None:
                self.lib.nvmlEventSetFree(self._event_set)
            self.lib.nvmlShutdown()
        except self.lib.NVMLError:
            pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value) -> float | None:
    return float(value) if value is not None else None


def collector_open(*, nvml=None, force_cpu: bool = False) -> NvmlCollector | CpuCollector:
    """NVML when the library and at least one GPU are there, otherwise CPU mode (logged)."""
    if force_cpu:
        return CpuCollector(reason="CPU mode requested")
    if nvml is None:
        try:
            import pynvml as nvml  # the nvidia-ml-py distribution
        except ImportError as exc:  # pragma: no cover - it is a runtime requirement
            return CpuCollector(reason=f"nvidia-ml-py not installed ({exc})")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        reason = f"NVML unavailable ({exc.__class__.__name__}: {exc}); CPU mode, reporting CPU and RAM"
        logger.warning(reason)
        return CpuCollector(reason=reason)
    try:
        collector = NvmlCollector(nvml)
    except nvml.NVMLError as exc:
        nvml.nvmlShutdown()
        return CpuCollector(reason=f"NVML failed reading GPUs ({exc}); CPU mode")
    if not collector.gpus:
        collector.close()
        return CpuCollector(reason="NVML found no GPUs; CPU mode, reporting CPU and RAM")
    return collector
