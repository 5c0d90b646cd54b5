import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_LAYOUT_DISKS, parseDiskLayout } from './disklayout.ts';

// As ReaR 2.7 writes it (layout/save/GNU/Linux/200_partition_layout.sh and friends) on a VM
// with a system disk under LVM and a data disk; UUIDs shortened, content otherwise verbatim.
const REAR_27 = `# Disk layout dated 20260112093012 (YYYYmmddHHMMSS)
# NAME                        KNAME     PKNAME    TRAN   TYPE FSTYPE      LABEL  SIZE MOUNTPOINT
# /dev/sda                    /dev/sda            sata   disk                     20G
# |-/dev/sda1                 /dev/sda1 /dev/sda         part                      1M
# |-/dev/sda2                 /dev/sda2 /dev/sda         part xfs                  1G /boot
# \`-/dev/sda3                 /dev/sda3 /dev/sda         part LVM2_member         19G
#   |-/dev/mapper/rhel-root   /dev/dm-0 /dev/sda3        lvm  xfs                 17G /
#   \`-/dev/mapper/rhel-swap   /dev/dm-1 /dev/sda3        lvm  swap                 2G [SWAP]
# /dev/sdb                    /dev/sdb            sata   disk ext4        data    50G /srv
# /dev/sr0                    /dev/sr0            sata   rom                    1024M
# Disk /dev/sda
# Format: disk <devname> <size(bytes)> <partition label type>
disk /dev/sda 21474836480 gpt
# Partitions on /dev/sda
# Format: part <device> <partition size(bytes)> <partition start(bytes)> <partition type|name> <flags> /dev/<partition>
part /dev/sda 1048576 1048576 rear-noname bios_grub /dev/sda1
part /dev/sda 1073741824 2097152 rear-noname none /dev/sda2
part /dev/sda 20399996928 1075838976 rear-noname lvm /dev/sda3
# Disk /dev/sdb
# Format: disk <devname> <size(bytes)> <partition label type>
disk /dev/sdb 53687091200 
# Partitions on /dev/sdb
# Format: part <device> <partition size(bytes)> <partition start(bytes)> <partition type|name> <flags> /dev/<partition>
# Disk /dev/sdc
# Format: disk <devname> <size(bytes)> <partition label type>
#disk /dev/sdc 107374182400 msdos
# Format for LVM PVs
# lvmdev <volume_group> <device> [<uuid>] [<size(bytes)>]
lvmdev /dev/rhel /dev/sda3 Hq3eTm-xxxx-xxxx 39843840
# Format for LVM VGs
# lvmgrp <volume_group> <extentsize> [<size(extents)>] [<size(bytes)>]
lvmgrp /dev/rhel 4096 4863 19918848
# Format for LVM LVs
# lvmvol <volume_group> <name> <size(bytes)> <layout> [key:value ...]
lvmvol /dev/rhel root 18249416704b linear
lvmvol /dev/rhel swap 2147483648b linear
# Filesystems (only ext2,ext3,ext4,vfat,xfs,reiserfs,btrfs are supported).
# Format: fs <device> <mountpoint> <fstype> [uuid=<uuid>] [label=<label>] [<attributes>]
fs /dev/mapper/rhel-root / xfs uuid=5d3e0c55-xxxx label=  options=rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,noquota
fs /dev/sda2 /boot xfs uuid=0b0f6a3e-xxxx label=  options=rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,noquota
fs /dev/sdb /srv ext4 uuid=7f1c2a9e-xxxx label=data blocksize=4096 reserved_blocks=5% max_mounts=-1 check_interval=0d bytes_per_inode=16384 default_mount_options=user_xattr,acl options=rw,relatime
# Swap partitions or swap files
# Format: swap <filename> uuid=<uuid> label=<label>
swap /dev/mapper/rhel-swap uuid=1c7e4b2a-xxxx label=
`;

test('parseDiskLayout: the disk lines of a ReaR 2.7 file; comments, disabled disks and other kinds ignored', () => {
  const l = parseDiskLayout(REAR_27);
  assert.deepEqual(l.disks, [
    { device: '/dev/sda', size: 21474836480, label: 'gpt' },
    // A disk without a partition table: ReaR writes an empty label type.
    { device: '/dev/sdb', size: 53687091200, label: '' },
  ]);
  assert.deepEqual(l.skipped, []);
});

test('parseDiskLayout: NVMe and multipath names, CRLF line ends, leading blanks', () => {
  const l = parseDiskLayout('disk /dev/nvme0n1 512110190592 gpt\r\n  disk /dev/mapper/mpatha 1099511627776 msdos\r\n');
  assert.deepEqual(l.disks.map((d) => [d.device, d.size]), [['/dev/nvme0n1', 512110190592], ['/dev/mapper/mpatha', 1099511627776]]);
});

test('parseDiskLayout: a malformed disk line is skipped and named, the rest is read', () => {
  const l = parseDiskLayout(['disk /dev/sda 20G gpt', 'disk', 'disk sda 1000 gpt', 'disk /dev/vda 53687091200 gpt', `disk /dev/vdb ${'9'.repeat(20)} gpt`].join('\n'));
  assert.deepEqual(l.disks, [{ device: '/dev/vda', size: 53687091200, label: 'gpt' }]);
  assert.deepEqual(l.skipped, [1, 2, 3, 5]);
});

test('parseDiskLayout: empty, binary or huge input gives at most MAX_LAYOUT_DISKS disks', () => {
  assert.deepEqual(parseDiskLayout('').disks, []);
  assert.deepEqual(parseDiskLayout('\u0000\u0001disk\u0000').disks, []);
  const many = Array.from({ length: MAX_LAYOUT_DISKS + 10 }, (_, i) => `disk /dev/sd${i} 1000 gpt`).join('\n');
  assert.equal(parseDiskLayout(many).disks.length, MAX_LAYOUT_DISKS);
});
