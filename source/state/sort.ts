// Sorting of the file list. Each key has the direction users expect first (newest, largest, highest
// rank/epoch first; names A→Z); `S` reverses it. Rows lacking the value (still loading, failed, no
// metadata) go last in either direction, and ties fall back to name, then arrival order, so the
// order is stable while entries stream in.
import type {FileRow, SortKey} from './types.js';

export const defaultDescending: Readonly<Record<SortKey, boolean>> = {
	modified: true,
	name: false,
	size: true,
	rank: true,
	epoch: true,
};

export const sortLabels: Readonly<Record<SortKey, string>> = {
	modified: 'modified',
	name: 'name',
	size: 'size',
	rank: 'rank',
	epoch: 'epoch',
};

const collator = new Intl.Collator('en', {numeric: true, sensitivity: 'base'});

function sortValue(row: FileRow, key: SortKey): number | string | undefined {
	switch (key) {
		case 'modified': {
			return row.mtimeMs;
		}

		case 'name': {
			return row.name;
		}

		case 'size': {
			return row.sizeBytes;
		}

		case 'rank': {
			return row.summary.rank;
		}

		case 'epoch': {
			return row.summary.epoch;
		}
	}
}

export function compareRows(a: FileRow, b: FileRow, key: SortKey, descending: boolean): number {
	const va = sortValue(a, key);
	const vb = sortValue(b, key);
	if (va === undefined || vb === undefined) {
		if (va !== vb) {
			return va === undefined ? 1 : -1;
		}
	} else if (va !== vb) {
		const order = typeof va === 'string' || typeof vb === 'string' ? collator.compare(String(va), String(vb)) : (va as number) - (vb as number);
		if (order !== 0) {
			return descending ? -order : order;
		}
	}

	const byName = collator.compare(a.name, b.name);
	if (byName !== 0) {
		return byName;
	}

	const byFolder = collator.compare(a.folder, b.folder);
	return byFolder === 0 ? a.seq - b.seq : byFolder;
}

export function sortRows(rows: FileRow[], key: SortKey, descending: boolean): FileRow[] {
	return rows.sort((a, b) => compareRows(a, b, key, descending));
}

export function nextSortKey(key: SortKey, keys: readonly SortKey[]): SortKey {
	const index = keys.indexOf(key);
	return keys[(index + 1) % keys.length] ?? key;
}
