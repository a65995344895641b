// Tensor tables shared between files whose headers differ only in `__metadata__`.
//
// A folder of LoRAs is mostly epochs of a few training runs. Every epoch of a run has the same
// tensor names, dtypes, shapes and offsets, so after the `__metadata__` object (which writers put
// first) their headers are byte for byte the same. Comparing those bytes with a table parsed
// before (memcmp, ~10 µs for 130 KB) replaces parsing ~1,000 entries and building the model again
// (~2 ms): see parseHeaderJson and buildLoraModel. Matching is on the exact bytes, never on a
// hash, so two different tables can never be confused.
import {Buffer} from 'node:buffer';
import process from 'node:process';
import type {TensorInfo} from './types.js';

export type SharedTable = {
	/** Frozen, like every TensorInfo in it and its shape: several headers hold the same objects. */
	tensors: readonly TensorInfo[];
	byName: ReadonlyMap<string, TensorInfo>;
	/** The largest end offset: a header may share the table only if its data area holds it. */
	maxEnd: number;
};

type Slot = SharedTable & {tail: Buffer};

/**
 * Tables kept, most recently used first. A folder lists its runs interleaved (newest first), so
 * a run whose table fell out would miss on every file: keep more runs than a folder usually has.
 * A table costs its tail bytes plus ~250 bytes per tensor on the heap (~0.4 MB for SD1.5 or SDXL).
 */
const maxSlots = 64;
/**
 * Entries kept in all (~250 bytes of heap each, ~40 MB): 64 SDXL tables of ~2,200. A table of
 * more than an eighth of that (20,000 entries; LoRAs have a few thousand) is never kept, so a
 * hostile header's thousands of tiny entries cannot crowd the cache.
 */
const maxTotalEntries = 160_000;
/** Real LoRA headers stay under 1 MB; a larger one is parsed alone. */
const maxTailBytes = 2 * 1024 * 1024;

const slots: Slot[] = [];
let totalEntries = 0;
const sharedTables = new WeakSet<readonly TensorInfo[]>();

/**
 * False when `LORASCOPE_STRUCTURE_CACHE=0`: `npm run bench` turns sharing off to measure headers
 * that are all unlike each other. Read on every call, so it can change while the process runs.
 */
export function structureSharingEnabled(): boolean {
	return process.env['LORASCOPE_STRUCTURE_CACHE'] !== '0';
}

/** The table parsed before from exactly these tail bytes, most recently used first. */
export function findSharedTable(tail: Uint8Array): SharedTable | undefined {
	for (let i = 0; i < slots.length; i++) {
		const slot = slots[i]!;
		if (slot.tail.length === tail.length && slot.tail.equals(tail)) {
			if (i > 0) {
				slots.splice(i, 1);
				slots.unshift(slot);
			}

			return slot;
		}
	}

	return undefined;
}

/**
 * Keep a freshly parsed, fully validated table under its tail bytes (copied: the caller's buffer
 * may be reused). Freezes the table, since from now on headers share it.
 */
export function shareTable(tail: Uint8Array, tensors: TensorInfo[], byName: Map<string, TensorInfo>): void {
	if (tail.length > maxTailBytes || tensors.length > maxTotalEntries / 8) {
		return;
	}

	let maxEnd = 0;
	for (const tensor of tensors) {
		maxEnd = Math.max(maxEnd, tensor.end);
		Object.freeze(tensor.shape);
		Object.freeze(tensor);
	}

	Object.freeze(tensors);
	sharedTables.add(tensors);
	slots.unshift({tail: Buffer.from(tail), tensors, byName, maxEnd});
	totalEntries += tensors.length;
	while (slots.length > maxSlots || totalEntries > maxTotalEntries) {
		totalEntries -= slots.pop()!.tensors.length;
	}
}

/** Whether `tensors` is a table that several headers may hold (so derived results can be shared too). */
export function isSharedTable(tensors: readonly TensorInfo[]): boolean {
	return sharedTables.has(tensors);
}

/** Forget every table (tests). */
export function clearSharedTables(): void {
	slots.length = 0;
	totalEntries = 0;
}
