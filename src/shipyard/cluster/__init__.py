"""Ray Serve: the same repository on a cluster, each model a deployment of Shipyard's service.

* :mod:`~shipyard.cluster.replica`: one replica of one model (registry, service, dynamic
  batcher and Shipyard's own V2 HTTP app), and the root ingress for the server-level routes.
* :mod:`~shipyard.cluster.deploy`: connect to a cluster and deploy a repository onto it.
* :mod:`~shipyard.cluster.front`: the front door of ``--ingress shipyard`` (HAProxy on the head
  node, :mod:`~shipyard.cluster.haproxy`), to which replicas serving with Shipyard's own HTTP
  server (:mod:`~shipyard.cluster.listener`) announce themselves;
  :mod:`~shipyard.cluster.autoscale` is Ray's autoscaling policy for them.

Ray is an optional extra (``pip install 'shipyard[ray]'``), imported only by ``deploy``.
"""

__all__: list[str] = []
