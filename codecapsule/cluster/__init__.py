"""Cluster: deploy, operate and tear down the Cloudflare Tunnel + Azure VM Scale Set."""
