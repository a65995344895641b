// Fake loaded entries for reducer and keymap tests (no files involved).
import type {LoraModel, SafetensorsHeader} from '../../source/lora/types.js';
import type {LoadedEntry} from '../../source/state/entry-shape.js';
import type {TerminalEnv} from '../../source/state/types.js';

export const unicodeEnv: TerminalEnv = {unicode: true, color: false};
export const asciiEnv: TerminalEnv = {unicode: false, color: false};

export type FakeEntryOptions = {
	size?: number;
	mtime?: number;
	metadata?: Record<string, string>;
	rank?: number | null;
	alpha?: number | null;
	arch?: LoraModel['arch'];
	error?: string;
};

export function fakeModel(options: FakeEntryOptions = {}): LoraModel {
	return {
		keyStyle: 'kohya',
		networkType: 'LoRA',
		arch: options.arch ?? 'sd1',
		archEvidence: 'test',
		metadataArch: null,
		modules: [],
		rank: options.rank === undefined ? 8 : options.rank,
		alpha: options.alpha === undefined ? 4 : options.alpha,
		dtype: 'F16',
		unknownTensors: [],
		warnings: [],
	};
}

export function fakeEntry(path: string, options: FakeEntryOptions = {}): LoadedEntry {
	const sizeBytes = options.size ?? 1000;
	const mtimeMs = options.mtime ?? 1_700_000_000_000;
	if (options.error !== undefined) {
		return {path, sizeBytes, mtimeMs, error: options.error};
	}

	const header: SafetensorsHeader = {
		path,
		sizeBytes,
		mtimeMs,
		headerLength: 100,
		dataOffset: 108,
		tensors: [],
		byName: new Map(),
		metadata: options.metadata ?? {},
	};
	return {path, sizeBytes, mtimeMs, error: null, header, model: fakeModel(options)};
}
