"""``shipyard serve --workers N``: N worker processes on one machine that serve as one server.

The supervisor (:mod:`.supervisor`) binds the ports with SO_REUSEPORT, starts the workers
(:mod:`.worker`), restarts any that dies and drains them all on SIGTERM. Over the control
channel (:mod:`.channel`), a worker asked about the whole server asks the supervisor, which
asks every worker (:mod:`.broker`, :mod:`.member`): readiness is every worker's, statistics
and ``/metrics`` are summed (:mod:`.aggregate`), and repository control reaches them all
before the call returns. docs/scaling.md says when to use it.
"""

from shipyard.workers.supervisor import RestartPolicy, Supervisor, serve_workers

__all__ = ["RestartPolicy", "Supervisor", "serve_workers"]
