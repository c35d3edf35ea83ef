from __future__ import annotations

import pytest

from fleetagent.agent.collect import CpuCollector, NvmlCollector, collector_open, host_read
from tests.fleetagent.fake_nvml import FakeNvml


def test_every_gpu_is_read_with_all_fields():
    collector = collector_open(nvml=FakeNvml())
    assert isinstance(collector, NvmlCollector)
    assert collector.gpu_model == "NVIDIA A10"
    first, second = collector.read()
    assert first["index"] == 0 and second["index"] == 1
    assert first["utilization"] == 87.0 and first["memory_utilization"] == 41.0
    assert first["vram_used_mb"] == 7000.0 and first["vram_total_mb"] == 23028.0
    assert first["temperature_c"] == 71.0
    assert first["power_w"] == 142.5 and first["power_limit_w"] == 150.0  # mW -> W
    assert first["sm_clock_mhz"] == 1695.0
    assert first["throttle_reasons"] == 0x4
    assert first["ecc_errors"] == 3
    assert first["processes"] == [{"pid": 4242, "vram_used_mb": 6500.0}]
    # An unsupported counter reads as zero without hiding the other fields.
    assert second["ecc_errors"] == 0 and second["utilization"] == 3.0


def test_xid_events_are_counted_per_gpu():
    nvml = FakeNvml()
    collector = collector_open(nvml=nvml)
    nvml.pending_xids = [(1, 79), (1, 48)]
    readings = collector.read()
    assert [r["xid_errors"] for r in readings] == [0, 2]
    assert readings[1]["last_xid"] == 48
    assert collector.read()[1]["xid_errors"] == 2  # a count, not reset by reading


def test_missing_nvml_library_falls_back_to_cpu_mode_and_says_so():
    collector = collector_open(nvml=FakeNvml(missing=True))
    assert isinstance(collector, CpuCollector)
    assert collector.nvml is False
    assert "LibraryNotFound" in collector.reason and "CPU" in collector.reason
    assert collector.read() == []


def test_no_gpus_falls_back_to_cpu_mode_and_shuts_nvml_down():
    nvml = FakeNvml(gpus=0)
    collector = collector_open(nvml=nvml)
    assert isinstance(collector, CpuCollector) and "no GPUs" in collector.reason
    assert nvml.shutdown_calls == 1


def test_host_reading_reports_cpu_and_ram():
    host = host_read()
    assert 0.0 <= host.cpu_percent <= 100.0
    assert 0 < host.ram_used_mb < host.ram_total_mb


def test_real_pynvml_on_this_machine():
    """Without a GPU the real library must lead to CPU mode, not a crash."""
    collector = collector_open()
    if collector.nvml:
        pytest.skip("this machine has NVML and a GPU; the CPU fallback is covered by the fake")
    assert "CPU" in collector.reason


@pytest.mark.gpu
def test_real_gpu_readings():
    collector = collector_open()
    if not collector.nvml:
        pytest.skip("needs an NVIDIA GPU with NVML (none on this machine or in CI)")
    readings = collector.read()
    assert readings and all(r["vram_total_mb"] > 0 for r in readings)
