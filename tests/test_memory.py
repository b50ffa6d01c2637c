"""memory: the machine's available memory and the headroom its control groups (Slurm, containers) leave."""

import pytest

from cladec_cli import memory

GB = 10 ** 9


def write_group(folder, limit, usage, stat=""):
    folder.mkdir(parents=True, exist_ok=True)
    limit_file, usage_file = ("memory.max", "memory.current") if "v2" in folder.parts else \
        ("memory.limit_in_bytes", "memory.usage_in_bytes")
    (folder / limit_file).write_text(f"{limit}\n")
    (folder / usage_file).write_text(f"{usage}\n")
    (folder / "memory.stat").write_text(stat)


def test_a_slurm_jobs_limit_set_above_its_steps_group_counts_under_cgroup_v2(tmp_path):
    root = tmp_path / "v2"
    (tmp_path / "cgroup").write_text("0::/system.slice/job_7/step_0\n")
    write_group(root / "system.slice" / "job_7", 8 * GB, 6 * GB, f"anon 5000\ninactive_file {GB}\nactive_file 7\n")
    write_group(root / "system.slice" / "job_7" / "step_0", "max", 6 * GB)
    assert memory.cgroup_headroom(tmp_path / "cgroup", root) == 3 * GB  # 8 - 6 + 1 of reclaimable page cache


def test_the_tightest_of_nested_limits_counts_under_cgroup_v1(tmp_path):
    root = tmp_path / "v1"
    (tmp_path / "cgroup").write_text("5:cpu,cpuacct:/slurm/job_3\n4:memory:/slurm/uid_0/job_3\n0::/\n")
    write_group(root / "memory" / "slurm", 9223372036854771712, 50 * GB)  # no limit
    write_group(root / "memory" / "slurm" / "uid_0", 10 * GB, 9 * GB)
    write_group(root / "memory" / "slurm" / "uid_0" / "job_3", 4 * GB, GB, f"total_inactive_file {GB // 2}\n")
    assert memory.cgroup_headroom(tmp_path / "cgroup", root) == 1 * GB
    (root / "memory" / "slurm" / "uid_0" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert memory.cgroup_headroom(tmp_path / "cgroup", root) == 3 * GB + GB // 2


def test_groups_without_a_limit_leave_the_machines_figure(tmp_path, monkeypatch):
    root = tmp_path / "v2"
    (tmp_path / "cgroup").write_text("0::/\n")
    write_group(root, "max", 3 * GB)
    assert memory.cgroup_headroom(tmp_path / "cgroup", root) is None
    assert memory.cgroup_headroom(tmp_path / "missing", root) is None


@pytest.mark.parametrize("groups, expected", [(None, 20 * GB), (5 * GB, 5 * GB), (30 * GB, 20 * GB)])
def test_available_memory_is_the_smaller_of_the_machines_and_the_groups(monkeypatch, groups, expected):
    monkeypatch.setattr(memory, "machine_available_bytes", lambda: 20 * GB)
    monkeypatch.setattr(memory, "cgroup_headroom", lambda: groups)
    assert memory.available_bytes() == expected
    assert memory.hold_limit() == expected // 2


def test_the_machines_figure_is_mem_available(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n")
    assert memory.machine_available_bytes(tmp_path / "meminfo") == 2000 * 1024
    assert memory.machine_available_bytes(tmp_path / "missing") > 0  # the physical memory
