// What the dashboard keeps of a loaded file: H3's LoraEntry (header-only read: header, detected model,
// parsed training metadata, or a one-line error).
import type {LoraEntry} from '../lora/entry.js';
import {parseTraining, type TrainingInfo} from '../lora/metadata.js';

export type LoadedEntry = LoraEntry;

const parsed = new WeakMap<LoadedEntry, TrainingInfo>();

/** The entry's training info, parsed from its metadata on first use when the loader did not. */
export function trainingOf(entry: LoadedEntry | undefined): TrainingInfo | undefined {
	if (!entry?.header) {
		return entry?.training;
	}

	if (entry.training) {
		return entry.training;
	}

	let info = parsed.get(entry);
	if (!info) {
		info = parseTraining(entry.header.metadata);
		parsed.set(entry, info);
	}

	return info;
}
