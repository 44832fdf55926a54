export { type BlockBackend, SECTOR_SIZE } from './block-backend.js';
export { FileBackend, type FileBackendOptions } from './file-backend.js';
export { MemoryBackend } from './memory-backend.js';
