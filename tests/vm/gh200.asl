/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ACPI objects that make the stand-in PCI functions of the test VM look like
 * Grace Hopper GPUs: each gets the _DSD device properties that firmware
 * gives the GPU (or a broken subset of them).  _STA makes Linux choose these
 * objects over QEMU's own slot objects; _RST gives the function a reset
 * method, so that VFIO_DEVICE_RESET works.
 *
 * The 64-bit values need a DSDT of revision 2 or later: tests/vm/run-vm.sh
 * upgrades QEMU's DSDT through the initrd.
 *
 * The real-sized GPUs at 00:11.0-00:14.0 sit high in the physical address
 * space, in sparse memory that run-vm.sh gives the machine as DIMMs: below
 * 2^46 on x86_64, whose 4-level page tables reach no higher, from 2^46 up
 * on arm64 (compiled with -DNVG_ARM64).  On a 4 KiB kernel their PFNs do
 * not fit in 32 bits.
 */
#ifdef NVG_ARM64
#define BIG_GB200       0x400000000000  /* 64 TiB */
#define BIG_GB200_FAR   0x420000000000  /* 66 TiB */
#define BIG_GB300       0x440000000000  /* 68 TiB */
#define BIG_GH200       0x470000000000  /* 71 TiB */
#else
#define BIG_GB200       0x380000000000  /* 56 TiB */
#define BIG_GB200_FAR   0x3A0000000000  /* 58 TiB */
#define BIG_GB300       0x3C0000000000  /* 60 TiB */
#define BIG_GH200       0x3F0000000000  /* 63 TiB */
#endif
DefinitionBlock ("", "SSDT", 2, "NVGRCE", "GH200RIG", 1)
{
    External (\_SB.PCI0, DeviceObj)

    Scope (\_SB.PCI0)
    {
        /* 00:05.0: Hopper, at 5 GiB, size not memblock aligned */
        Device (GPU0)
        {
            Name (_ADR, 0x00050000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x140000000 },
                    Package () { "nvidia,gpu-mem-size", 0x9FF00000 }
                }
            })
        }
        /* 00:06.0: no properties: plain vfio-pci behaviour */
        Device (GPU1)
        {
            Name (_ADR, 0x00060000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
        }
        /* 00:07.0: size 0: chip-to-chip link down, probe fails with -ENODEV */
        Device (GPU2)
        {
            Name (_ADR, 0x00070000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x200000000 },
                    Package () { "nvidia,gpu-mem-size", 0x0 }
                }
            })
        }
        /* 00:08.0: base only: probe fails with -EINVAL */
        Device (GPU3)
        {
            Name (_ADR, 0x00080000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x200000000 }
                }
            })
        }
        /* 00:09.0: exactly 1.5 GiB at 8.5 GiB, no reset method */
        Device (GPU4)
        {
            Name (_ADR, 0x00090000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x220000000 },
                    Package () { "nvidia,gpu-mem-size", 0x60000000 }
                }
            })
        }
        /* 00:0a.0: 1 GiB: too small, probe fails with -EINVAL */
        Device (GPU5)
        {
            Name (_ADR, 0x000A0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x200000000 },
                    Package () { "nvidia,gpu-mem-size", 0x40000000 }
                }
            })
        }
        /* 00:0b.0: base not page aligned: probe fails with -EINVAL */
        Device (GPU6)
        {
            Name (_ADR, 0x000B0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x100000800 },
                    Package () { "nvidia,gpu-mem-size", 0x80000000 }
                }
            })
        }
        /* 00:0c.0: range wraps past 2^64: probe fails with -EOVERFLOW */
        Device (GPU7)
        {
            Name (_ADR, 0x000C0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0xFFFFFFFFC0000000 },
                    Package () { "nvidia,gpu-mem-size", 0x80000000 }
                }
            })
        }
        /*
         * 00:10.0: 1.5 GiB + 60.5 KiB at 14 GiB: resmem (1 GiB + 60.5 KiB)
         * is not a whole number of pages, with a 512 B tail on 4 KiB
         * pages and a 60.5 KiB one on 64 KiB pages
         */
        Device (GPUB)
        {
            Name (_ADR, 0x00100000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x380000000 },
                    Package () { "nvidia,gpu-mem-size", 0x6000F200 }
                }
            })
        }
        /* 00:11.0: GH200, Hopper, 96 GiB */
        Device (GH2H)
        {
            Name (_ADR, 0x00110000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", BIG_GH200 },
                    Package () { "nvidia,gpu-mem-size", 0x1800000000 }
                }
            })
        }
        /* 00:12.0: GB200, Blackwell (tests/dvsec), 186 GiB + 2 MiB */
        Device (GB2A)
        {
            Name (_ADR, 0x00120000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", BIG_GB200 },
                    Package () { "nvidia,gpu-mem-size", 0x2E80200000 }
                }
            })
        }
        /* 00:13.0: the second GPU of that GB200, 2 TiB above the first */
        Device (GB2B)
        {
            Name (_ADR, 0x00130000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", BIG_GB200_FAR },
                    Package () { "nvidia,gpu-mem-size", 0x2E80200000 }
                }
            })
        }
        /* 00:14.0: GB300, Blackwell (tests/dvsec), 288 GiB */
        Device (GB3A)
        {
            Name (_ADR, 0x00140000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_RST, 0, NotSerialized) { }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", BIG_GB300 },
                    Package () { "nvidia,gpu-mem-size", 0x4800000000 }
                }
            })
        }
        /* 00:0e.0: size only: probe fails with -EINVAL */
        Device (GPU9)
        {
            Name (_ADR, 0x000E0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-size", 0x80000000 }
                }
            })
        }
        /*
         * 00:0f.0: valid GPU memory, but the function (a pci-testdev) has
         * a 4 KiB BAR0, too small for the readiness registers: probe
         * fails with -ENODEV
         */
        Device (GPUA)
        {
            Name (_ADR, 0x000F0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Name (_DSD, Package ()
            {
                ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                Package ()
                {
                    Package () { "nvidia,gpu-mem-base-pa", 0x200000000 },
                    Package () { "nvidia,gpu-mem-size", 0x80000000 }
                }
            })
        }
        /*
         * 00:0d.0, a PCIe root port, and behind it 01:00.0: 2 GiB at
         * 11 GiB, whole memory blocks; the secondary bus reset of the port
         * gives this function a hot reset.
         */
        Device (RP0)
        {
            Name (_ADR, 0x000D0000)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Device (GPU8)
            {
                Name (_ADR, 0x00000000)
                Method (_STA, 0, NotSerialized) { Return (0x0F) }
                Name (_DSD, Package ()
                {
                    ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
                    Package ()
                    {
                        Package () { "nvidia,gpu-mem-base-pa", 0x2C0000000 },
                        Package () { "nvidia,gpu-mem-size", 0x80000000 }
                    }
                })
            }
        }
    }
}
