# Convenience wrappers; the scripts are the real commands (see README.md).
.PHONY: lab check test ci clean

lab:
	bash scripts/lab.sh

check:
	bash scripts/lab.sh --check

test:
	bash scripts/test.sh

ci:
	bash .ci/run

clean:
	rm -rf .venv .numba_cache .pytest_cache .hypothesis build dist *.egg-info
