// One row of a file list: what the header alone says about a file. Never throws; a file that
// cannot be read carries a one-line `error` instead, so one bad file never hides the others.
import {stat} from 'node:fs/promises';
import {parseTraining, type TrainingInfo} from './metadata.js';
import {buildLoraModel, loadLoraModel} from './model.js';
import {errorReason, readHeader, TensorReader} from './safetensors.js';
import type {LoraModel, SafetensorsHeader} from './types.js';

/**
 * What a file list shows of a file, without its tensor table: a scan worker (header-pool.ts)
 * sends this instead of the whole entry, since copying a parsed header between threads costs
 * about as much as parsing it.
 */
export type EntrySummary = {
	metadata: Record<string, string>;
	arch: LoraModel['arch'];
	metadataArch: LoraModel['metadataArch'];
	networkType: LoraModel['networkType'];
	rank: number | null;
	alpha: number | null;
	dtype: string;
	moduleCount: number;
};

export type LoraEntry = {
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	/** One-line reason the file could not be read (never file content), null when it was. */
	error: string | null;
	header?: SafetensorsHeader;
	model?: LoraModel;
	training?: TrainingInfo;
	/** True when `model` carries the values of the alpha tensors (exact alpha and scale). */
	alphasLoaded?: boolean;
	/**
	 * Set on a light entry (read by a scan worker): the file was read and validated, but header,
	 * model and training are left out until it is read again in full (see isLightEntry).
	 */
	summary?: EntrySummary;
};

/** An entry that was read without error but carries only its summary. */
export function isLightEntry(entry: LoraEntry | undefined): boolean {
	return entry !== undefined && entry.error === null && entry.header === undefined && entry.summary !== undefined;
}

/** The light form of a loaded entry; errors and unread files pass through unchanged. */
export function lightEntry(entry: LoraEntry): LoraEntry {
	if (entry.error !== null || !entry.header || !entry.model) {
		return {path: entry.path, sizeBytes: entry.sizeBytes, mtimeMs: entry.mtimeMs, error: entry.error ?? 'not read'};
	}

	return {
		path: entry.path,
		sizeBytes: entry.sizeBytes,
		mtimeMs: entry.mtimeMs,
		error: null,
		alphasLoaded: false,
		summary: {metadata: entry.header.metadata, ...modelSummary(entry.model)},
	};
}

/** What a file list shows of a model. */
export function modelSummary(model: LoraModel): Omit<EntrySummary, 'metadata'> {
	return {
		arch: model.arch,
		metadataArch: model.metadataArch,
		networkType: model.networkType,
		rank: model.rank,
		alpha: model.alpha,
		dtype: model.dtype,
		moduleCount: model.modules.length,
	};
}

/** The model summary of an entry, full (from its model) or light (as a worker sent it). */
export function summaryOf(entry: LoraEntry): Omit<EntrySummary, 'metadata'> | undefined {
	return entry.model ? modelSummary(entry.model) : entry.summary;
}

/** Training metadata of an entry, full or light. */
export function metadataOf(entry: LoraEntry | undefined): Record<string, string> | undefined {
	return entry?.header?.metadata ?? entry?.summary?.metadata;
}

export type EntryOptions = {
	/**
	 * Also read the 0-d alpha tensors (a few hundred tiny reads) so alpha and scale are exact.
	 * Off by default: a file list should touch headers only.
	 */
	alphas?: boolean;
	/** Parse the training metadata (default true); a scan worker sends the raw map instead. */
	training?: boolean;
	/** Read the header with blocking calls (worker threads only; see readHeader). */
	blocking?: boolean;
};

/** Header, model and parsed training metadata of one file. Never throws. */
export async function loadEntry(filePath: string, options: EntryOptions = {}): Promise<LoraEntry> {
	let header: SafetensorsHeader;
	try {
		header = await readHeader(filePath, {blocking: options.blocking});
	} catch (error) {
		// Size and time for the row of a file that failed (readHeader has its own fstat otherwise).
		let sizeBytes = 0;
		let mtimeMs = 0;
		try {
			const info = await stat(filePath);
			sizeBytes = info.size;
			mtimeMs = info.mtimeMs;
		} catch {
			// Gone or unreadable: the reason below says so.
		}

		return {path: filePath, sizeBytes, mtimeMs, error: oneLine(errorReason(error))};
	}

	const entry: LoraEntry = {path: filePath, sizeBytes: header.sizeBytes, mtimeMs: header.mtimeMs, error: null, header};
	try {
		if (options.alphas) {
			const reader = await TensorReader.open(header);
			try {
				entry.model = await loadLoraModel(header, reader);
				entry.alphasLoaded = true;
			} finally {
				await reader.close();
			}
		} else {
			entry.model = buildLoraModel(header);
			entry.alphasLoaded = !entry.model.modules.some(m => m.alphaSource === 'tensor');
		}

		if (options.training !== false) {
			entry.training = parseTraining(header.metadata);
		}
	} catch (error) {
		entry.error = oneLine(errorReason(error));
	}

	return entry;
}

function oneLine(text: string): string {
	const line = text.split(/\r?\n/, 1)[0] ?? '';
	return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}
