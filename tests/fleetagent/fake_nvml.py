"""A stand-in for the pynvml module (the NVML edge), with two GPUs of known readings."""

from __future__ import annotations

from types import SimpleNamespace

MB = 1024 * 1024


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's own spelling
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


class NVMLError_Timeout(NVMLError):  # noqa: N801
    pass


class FakeNvml:
    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, *, missing: bool = False, gpus: int = 2) -> None:
        self.missing = missing
        self.count = gpus
        self.initialised = False
        self.shutdown_calls = 0
        self.pending_xids: list[tuple[int, int]] = []  # (gpu index, xid)
        self.util = {0: (87, 41), 1: (3, 0)}
        self.used_mb = {0: 7000, 1: 512}

    def nvmlInit(self):
        if self.missing:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.initialised = True

    def nvmlShutdown(self):
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index):
        return SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA A10"

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-0000-{handle.index}"

    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu, memory = self.util[handle.index]
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=self.used_mb[handle.index] * MB, total=23028 * MB, free=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 71 if handle.index == 0 else 35

    def nvmlDeviceGetPowerUsage(self, handle):
        return 142_500  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 150_000

    def nvmlDeviceGetClockInfo(self, handle, clock):
        assert clock == self.NVML_CLOCK_SM
        return 1695

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return 0x4 if handle.index == 0 else 0  # SW power cap on GPU 0

    def nvmlDeviceGetTotalEccErrors(self, handle, kind, counter):
        if handle.index == 1:
            raise NVMLError_NotSupported("Not Supported")
        return 2 if kind == self.NVML_MEMORY_ERROR_TYPE_CORRECTED else 1

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        if handle.index == 0:
            return [SimpleNamespace(pid=4242, usedGpuMemory=6500 * MB)]
        return []

    def nvmlEventSetCreate(self):
        return object()

    def nvmlDeviceRegisterEvents(self, handle, types, event_set):
        assert types == self.nvmlEventTypeXidCriticalError

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        if not self.pending_xids:
            raise NVMLError_Timeout("Timeout")
        index, xid = self.pending_xids.pop(0)
        return SimpleNamespace(device=SimpleNamespace(index=index), eventData=xid, eventType=8)

    def nvmlEventSetFree(self, event_set):
        pass
