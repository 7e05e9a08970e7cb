"""Deploy drivers: Docker, SSH hosts and Kubernetes, behind one protocol (base.py)."""
