"""Load balancers a Docker app's deploys drive (``load_balancer:`` of the app, models in
``config.py``): HAProxy through its runtime API (``haproxy.py``) and nginx through an
upstream file and a graceful reload (``nginx.py``).

The driver calls them in this order, so no request reaches a container that is not
healthy or that is being stopped: ``enable`` after a container passed its health check,
``disable`` (which returns once the balancer sends it nothing more and its open
connections ended, or ``drain_timeout`` passed) before a container is stopped or removed,
``sync`` at the start of a deploy (the running containers, and nothing else). Every
method blocks and raises BalancerError.
"""
from __future__ import annotations

from console.deploy.balancers.base import Balancer, BalancerError, Log, Server
from console.deploy.balancers.config import LoadBalancer
from console.deploy.balancers.haproxy import HaproxyBalancer
from console.deploy.balancers.nginx import NginxBalancer


def balancer_for(config: LoadBalancer) -> Balancer:
    """The balancer ``config`` (an app's ``load_balancer``) describes."""
    return HaproxyBalancer(config) if config.type == "haproxy" else NginxBalancer(config)


__all__ = ["Balancer", "BalancerError", "LoadBalancer", "Log", "Server", "balancer_for"]
