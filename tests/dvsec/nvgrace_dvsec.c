// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test-only module: give a stand-in GPU of the test VM the NVIDIA DVSEC
 * that a Grace GPU has in its extended config space, with the capability
 * register value of the test's choice (bit 0: MIG works with cached GPU
 * memory, as on Blackwell); and, on request, Function Level Reset in the
 * Device Capabilities of its PCI Express capability, which no QEMU device
 * with RAM behind BAR0 (where the readiness registers are) has.  With it,
 * vfio-pci-core takes a write of Initiate FLR to the Device Control
 * register as a request to reset the function, and the PCI core resets it
 * with the method it found at enumeration (a bus reset, behind a root
 * port).
 *
 * QEMU has no device with an NVIDIA DVSEC, so the config accessors of the
 * function's bus are wrapped (generic ECAM ones call back into the bus's
 * map_bus, which is kept): for that one function, reads of the DVSEC's
 * 12 bytes, and of the next pointer of the last extended capability that
 * now leads to it, return the overlay; writes to them are dropped; every
 * other access goes to the bus's own accessors.  The DVSEC goes at 0x100
 * when the function has no extended capability, else at 0xf00, which must
 * read as zeros.  Unloading the module puts the accessors back.  Bind the
 * function after loading, unbind it before unloading: the driver reads the
 * DVSEC at probe time.
 *
 * With cxl=1 a CXL Device DVSEC (vendor 0x1e98, DVSEC ID 0) follows it, as
 * on a GPU that reports its memory ready there: its DVSEC Range 1 Size Low
 * register reads the value of the parameter cxl_size_low, which the test
 * changes at run time through /sys/module/nvgrace_dvsec/parameters/ (the
 * other registers of the CXL DVSEC read as zeros).
 *
 * Parameters: bdf=DDDD:BB:DD.F, caps=<16-bit capability register>,
 * flr=1 (advertise FLR; the function must have a PCI Express capability),
 * cxl=1, cxl_size_low=<32-bit register>
 */

#include <linux/bitmap.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/unaligned.h>

#define DVSEC_POS_FIRST	PCI_CFG_SPACE_SIZE
#define DVSEC_POS_LATER	0xf00
#define DVSEC_LEN	0xc
#define DVSEC_GPU_CAPS	3
/* The CXL Device DVSEC (CXL 2.0, 8.1.3), right after the NVIDIA one */
#define CXL_OFFSET	0x10
#define CXL_LEN		0x3c
#define CXL_DVSEC_ID	0
#define CXL_SIZE_LOW	0x1c

static char *bdf;
module_param(bdf, charp, 0444);
MODULE_PARM_DESC(bdf, "the function to give the DVSEC to");

static ushort caps;
module_param(caps, ushort, 0444);
MODULE_PARM_DESC(caps, "value of the DVSEC's capability register (0xa)");

static bool flr;
module_param(flr, bool, 0444);
MODULE_PARM_DESC(flr, "advertise Function Level Reset in PCI_EXP_DEVCAP");

static bool cxl;
module_param(cxl, bool, 0444);
MODULE_PARM_DESC(cxl, "add a CXL Device DVSEC after the NVIDIA DVSEC");

static uint cxl_size_low;
module_param(cxl_size_low, uint, 0644);
MODULE_PARM_DESC(cxl_size_low, "what DVSEC Range 1 Size Low reads, at any time");

static struct pci_dev *dvsec_pdev;
/* Config offset of DVSEC Range 1 Size Low, 0 without the CXL DVSEC */
static int cxl_size_low_pos;
static struct pci_ops *dvsec_orig_ops;
/* Config bytes of the function that the module answers, and their values */
static u8 dvsec_bytes[PCI_CFG_SPACE_EXP_SIZE];
static DECLARE_BITMAP(dvsec_mask, PCI_CFG_SPACE_EXP_SIZE);

static bool dvsec_function(struct pci_bus *bus, unsigned int devfn)
{
	return bus == dvsec_pdev->bus && devfn == dvsec_pdev->devfn;
}

static bool dvsec_overlaid(int where, int size)
{
	return where >= 0 && where + size <= PCI_CFG_SPACE_EXP_SIZE &&
	       find_next_bit(dvsec_mask, where + size, where) < where + size;
}

/* An overlaid byte: Range 1 Size Low follows its parameter */
static u8 dvsec_byte(int pos)
{
	int off = pos - cxl_size_low_pos;

	if (cxl_size_low_pos && off >= 0 && off < 4)
		return READ_ONCE(cxl_size_low) >> (8 * off);
	return dvsec_bytes[pos];
}

static int dvsec_read(struct pci_bus *bus, unsigned int devfn, int where,
		      int size, u32 *val)
{
	int ret = dvsec_orig_ops->read(bus, devfn, where, size, val);
	int i;

	if (ret || !dvsec_function(bus, devfn) || !dvsec_overlaid(where, size))
		return ret;
	for (i = 0; i < size; i++) {
		if (!test_bit(where + i, dvsec_mask))
			continue;
		*val &= ~(0xffU << (8 * i));
		*val |= (u32)dvsec_byte(where + i) << (8 * i);
	}
	return ret;
}

static int dvsec_write(struct pci_bus *bus, unsigned int devfn, int where,
		       int size, u32 val)
{
	if (dvsec_function(bus, devfn) && dvsec_overlaid(where, size))
		return PCIBIOS_SUCCESSFUL;
	return dvsec_orig_ops->write(bus, devfn, where, size, val);
}

/* The bus's own accessors, but for read and write (map_bus stays) */
static struct pci_ops dvsec_ops;

static void dvsec_overlay(int pos, int len)
{
	bitmap_set(dvsec_mask, pos, len);
}

static void dvsec_build(int pos)
{
	u8 *p = &dvsec_bytes[pos];

	/* Extended capability header: DVSEC, version 1, last in the list */
	put_unaligned_le32(PCI_EXT_CAP_ID_DVSEC | 1 << 16, p);
	/* Vendor, revision 0, length; DVSEC ID; capability register */
	put_unaligned_le32(PCI_VENDOR_ID_NVIDIA | DVSEC_LEN << 20,
			   p + PCI_DVSEC_HEADER1);
	put_unaligned_le16(DVSEC_GPU_CAPS, p + PCI_DVSEC_HEADER2);
	put_unaligned_le16(caps, p + PCI_DVSEC_HEADER2 + 2);
	dvsec_overlay(pos, DVSEC_LEN);
	if (!cxl)
		return;

	/* The NVIDIA DVSEC now leads to the CXL one, the last */
	put_unaligned_le32(PCI_EXT_CAP_ID_DVSEC | 1 << 16 |
			   (pos + CXL_OFFSET) << 20, p);
	p += CXL_OFFSET;
	put_unaligned_le32(PCI_EXT_CAP_ID_DVSEC | 1 << 16, p);
	put_unaligned_le32(PCI_VENDOR_ID_CXL | 1 << 16 | CXL_LEN << 20,
			   p + PCI_DVSEC_HEADER1);
	put_unaligned_le16(CXL_DVSEC_ID, p + PCI_DVSEC_HEADER2);
	dvsec_overlay(pos + CXL_OFFSET, CXL_LEN);
	cxl_size_low_pos = pos + CXL_OFFSET + CXL_SIZE_LOW;
}

/* Where the DVSEC goes; the last capability is made to point to it */
static int dvsec_place(struct pci_dev *pdev)
{
	int pos = PCI_CFG_SPACE_SIZE, i;
	u32 header, zero;

	if (pdev->cfg_size <= PCI_CFG_SPACE_SIZE)
		return -ENODEV;
	if (pci_read_config_dword(pdev, pos, &header))
		return -EIO;
	if (!header)
		return DVSEC_POS_FIRST;

	while (PCI_EXT_CAP_NEXT(header)) {
		pos = PCI_EXT_CAP_NEXT(header);
		if (pci_read_config_dword(pdev, pos, &header))
			return -EIO;
	}
	for (i = 0; i < CXL_OFFSET + CXL_LEN; i += 4) {
		if (pci_read_config_dword(pdev, DVSEC_POS_LATER + i, &zero) ||
		    zero)
			return -EBUSY;
	}
	put_unaligned_le32(header | DVSEC_POS_LATER << 20, &dvsec_bytes[pos]);
	dvsec_overlay(pos, 4);
	return DVSEC_POS_LATER;
}

/* Overlay the byte of PCI_EXP_DEVCAP that holds PCI_EXP_DEVCAP_FLR */
static int dvsec_add_flr(struct pci_dev *pdev)
{
	int pos = pci_find_capability(pdev, PCI_CAP_ID_EXP);
	u32 devcap;

	if (!pos)
		return -ENODEV;
	if (pci_read_config_dword(pdev, pos + PCI_EXP_DEVCAP, &devcap))
		return -EIO;
	devcap |= PCI_EXP_DEVCAP_FLR;
	pos += PCI_EXP_DEVCAP + 3;
	dvsec_bytes[pos] = devcap >> 24;
	dvsec_overlay(pos, 1);
	return 0;
}

static int __init dvsec_init(void)
{
	unsigned int domain, bus, slot, fn;
	int pos, ret;

	if (!bdf || sscanf(bdf, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) != 4)
		return -EINVAL;
	dvsec_pdev = pci_get_domain_bus_and_slot(domain, bus,
						 PCI_DEVFN(slot, fn));
	if (!dvsec_pdev)
		return -ENODEV;
	pos = dvsec_place(dvsec_pdev);
	if (pos < 0) {
		pci_err(dvsec_pdev, "no room for a DVSEC: %pe\n", ERR_PTR(pos));
		pci_dev_put(dvsec_pdev);
		return pos;
	}

	dvsec_build(pos);
	ret = flr ? dvsec_add_flr(dvsec_pdev) : 0;
	if (ret) {
		pci_err(dvsec_pdev, "cannot advertise FLR: %pe\n", ERR_PTR(ret));
		pci_dev_put(dvsec_pdev);
		return ret;
	}
	dvsec_ops = *dvsec_pdev->bus->ops;
	dvsec_ops.read = dvsec_read;
	dvsec_ops.write = dvsec_write;
	dvsec_orig_ops = pci_bus_set_ops(dvsec_pdev->bus, &dvsec_ops);
	pci_info(dvsec_pdev, "NVIDIA DVSEC %u at %#x, capabilities %#x%s%s\n",
		 DVSEC_GPU_CAPS, pos, caps, flr ? ", FLR" : "",
		 cxl ? ", CXL Device DVSEC" : "");
	return 0;
}

static void __exit dvsec_exit(void)
{
	pci_bus_set_ops(dvsec_pdev->bus, dvsec_orig_ops);
	pci_dev_put(dvsec_pdev);
}

module_init(dvsec_init);
module_exit(dvsec_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nvgrace-gpu-vfio-pci test rig: an NVIDIA DVSEC, and a CXL one, on a stand-in GPU");
