"""How many more bytes this process may allocate: the least of what the limits that apply leave.

- the machine: MemAvailable of /proc/meminfo;
- the process's own limits: RLIMIT_AS (`ulimit -v`, `prlimit --as`) less the address space in use
  (VmSize), RLIMIT_DATA (`ulimit -d`) less the data in use (VmData);
- its memory cgroup (a container's limit), at every level from its own group up to the root:
  cgroup v2's memory.max less memory.current, v1's memory.limit_in_bytes less usage_in_bytes,
  the page cache that the kernel reclaims first (inactive_file of memory.stat) not counted as used.

A run is refused with one line before it allocates more than this, rather than ending in a
MemoryError or being killed by the kernel. A limit that cannot be read counts as none.
SELF_CGROUP and CGROUP_ROOT name where the cgroup files are (tests point them at a folder of their own).
"""

import resource
from pathlib import Path

SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a number near 2**63
# (the limit's file, the usage's file, the reclaimable page cache's field of memory.stat): v2, then v1
CGROUP_FILES = (("memory.max", "memory.current", "inactive_file"),
                ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))


def available():
    """Bytes this process may still allocate (at least 0), or None when no limit is known."""
    known = [v for v in (machine_available(), rlimit_headroom(), cgroup_headroom()) if v is not None]
    return max(min(known), 0) if known else None


def machine_available():
    """MemAvailable of /proc/meminfo in bytes, or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rlimit_headroom():
    """What RLIMIT_AS and RLIMIT_DATA leave beyond the address space and data already in use
    (VmSize, VmData of /proc/self/status; the whole limit where those are unknown), or None."""
    room = []
    for limit, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            room.append(soft - (_status_bytes(field) or 0))
    return min(room) if room else None


def _status_bytes(field):
    """A "kB" field of /proc/self/status in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_headroom():
    """The least room (limit less usage) of this process's memory cgroup and its ancestors, v2 or
    v1, or None when none of them has a limit or none can be read."""
    room = [_room(folder, files) for folder, files in _cgroup_folders()]
    room = [r for r in room if r is not None]
    return min(room) if room else None


def _cgroup_folders():
    """(folder, CGROUP_FILES entry) for this process's memory cgroup and each ancestor up to its
    hierarchy's root, from SELF_CGROUP: "0::/path" is v2 (mounted at CGROUP_ROOT), a line naming
    the memory controller is v1 (at CGROUP_ROOT/memory). A folder that is not there (a container
    that mounts its own group as the root) is skipped; the root is always tried."""
    try:
        lines = SELF_CGROUP.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and (CGROUP_ROOT / "cgroup.controllers").exists():
            root, files = CGROUP_ROOT, CGROUP_FILES[0]
        elif "memory" in controllers.split(","):
            root, files = CGROUP_ROOT / "memory", CGROUP_FILES[1]
        else:
            continue
        folder = root / path.strip().lstrip("/")
        while folder != root and root in folder.parents:
            found.append((folder, files))
            folder = folder.parent
        found.append((root, files))
    return [(folder, files) for folder, files in found if folder.is_dir()]


def _room(folder, files):
    """limit - (usage - reclaimable page cache) of one cgroup folder, or None without a limit."""
    limit_file, usage_file, cache_field = files
    limit, usage = _number(folder / limit_file), _number(folder / usage_file)
    if limit is None or limit >= UNLIMITED:
        return None
    return limit - max((usage or 0) - (_stat(folder / "memory.stat", cache_field) or 0), 0)


def _number(path):
    """The integer in a cgroup file, None for "max", a missing or unreadable file."""
    try:
        text = path.read_text().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _stat(path, field):
    """One field of a memory.stat file, or None."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == field:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def describe(have):
    """have bytes as the error messages say it: '1.5 GiB' or '12 MiB'."""
    return f"{have / 2**30:.1f} GiB" if have >= 2**30 else f"{have / 2**20:.0f} MiB"

