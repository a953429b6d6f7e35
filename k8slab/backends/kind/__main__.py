"""``python -m k8slab.backends.kind --supervise -- ARGV...``: the port-forward supervisor."""
import sys

from .portforward import _supervise

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--supervise" and sys.argv[2] == "--":
        sys.exit(_supervise(sys.argv[3:]))
    sys.exit("usage: python -m k8slab.backends.kind --supervise -- ARGV...")
