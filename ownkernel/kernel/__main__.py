"""`python -m ownkernel.kernel -f {connection_file}`: what kernel.json runs."""

from __future__ import annotations


def main() -> None:
    from ipykernel.kernelapp import IPKernelApp

    from ownkernel.kernel.kernel import OwnKernel

    IPKernelApp.launch_instance(kernel_class=OwnKernel)


if __name__ == "__main__":
    main()
