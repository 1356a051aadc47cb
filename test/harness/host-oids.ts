// OIDs of snmpd's own tables that VM-MIB links to (IF-MIB, HOST-RESOURCES-MIB),
// numeric as the tools print them with -On (without the leading dot).
export const IF_DESCR = '1.3.6.1.2.1.2.2.1.2';
export const HR_STORAGE_TYPE = '1.3.6.1.2.1.25.2.3.1.2';
export const HR_STORAGE_DESCR = '1.3.6.1.2.1.25.2.3.1.3';
export const HR_PROCESSOR_FRW_ID = '1.3.6.1.2.1.25.3.3.1.1';
/** hrStorageFixedDisk, hrStorageRemovableDisk, hrStorageNetworkDisk: the types hrh_storage.c gives filesystems. */
export const FILESYSTEM_STORAGE_TYPES = new Set(['.1.3.6.1.2.1.25.2.1.4', '.1.3.6.1.2.1.25.2.1.5', '.1.3.6.1.2.1.25.2.1.10']);
