"""``python -m edgewise.serving.profiles``: run a replica (:func:`.worker.replica_main`)."""

from edgewise.serving.profiles.worker import replica_main

raise SystemExit(replica_main())
