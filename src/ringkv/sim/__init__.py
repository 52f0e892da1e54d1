"""The deterministic simulator: production nodes on a simulated network,
clock and disk, driven by one seed (see docs/simulator.md).

``Simulation`` (world.py) is the entry point; ``SimEngine`` (disk.py) and
``SimNetwork`` (network.py) are its disk and network; ``run`` (run.py) runs a
random workload with faults and checks it, as ``ringkv sim`` does; scenario
files (scenario.py) script a run step by step with golden output.
"""

from ringkv.sim.disk import SimEngine
from ringkv.sim.network import NetworkConfig, SimNetwork
from ringkv.sim.run import RunOptions, RunReport, run
from ringkv.sim.world import SimConfig, Simulation

__all__ = [
    "NetworkConfig",
    "RunOptions",
    "RunReport",
    "SimConfig",
    "SimEngine",
    "SimNetwork",
    "Simulation",
    "run",
]
