# SPDX-License-Identifier: GPL-2.0-only

# Built outside the kernel tree (make -C $KDIR M=$PWD, DKMS) against a
# kernel whose configuration does not know this driver: build the module.
ifneq ($(KBUILD_EXTMOD),)
CONFIG_NVGRACE_GPU_VFIO_PCI ?= m
endif

obj-$(CONFIG_NVGRACE_GPU_VFIO_PCI) += nvgrace-gpu-vfio-pci.o
nvgrace-gpu-vfio-pci-y := main.o nvgrace_config.o nvgrace_mem.o

obj-$(CONFIG_NVGRACE_GPU_VFIO_PCI_KUNIT_TEST) += nvgrace-gpu-vfio-pci-kunit.o
nvgrace-gpu-vfio-pci-kunit-y := tests/nvgrace_kunit.o
