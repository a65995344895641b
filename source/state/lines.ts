// Screen lines as data: the detail tabs and the compare view are built as arrays of lines by pure
// functions (tested without rendering) and drawn by one presentational component.

/** Semantic roles; the theme maps them to colours (none under NO_COLOR). */
export type Role =
	| 'text'
	| 'dim'
	| 'label'
	| 'value'
	| 'heading'
	| 'ok'
	| 'warn'
	| 'error'
	| 'accent'
	| 'bar'
	| 'bar-alt'
	| 'added'
	| 'removed'
	| 'changed'
	| 'match'
	| 'picked'
	| 'selected';

export type Segment = {text: string; role?: Role};

export type Line = {
	segments: Segment[];
	/** Present on lines the cursor can rest on: the id of what the line shows (field, key, tag, module). */
	key?: string;
	/** Shown in the pane's footer while the cursor is on this line (e.g. a field's definition). */
	hint?: string;
};

export function seg(text: string, role?: Role): Segment {
	return role === undefined ? {text} : {text, role};
}

export function line(segments: Segment[] | string, key?: string, hint?: string): Line {
	const segs = typeof segments === 'string' ? [seg(segments)] : segments;
	const out: Line = {segments: segs};
	if (key !== undefined) {
		out.key = key;
	}

	if (hint !== undefined) {
		out.hint = hint;
	}

	return out;
}

export const blank: Line = {segments: []};

export function lineText(l: Line): string {
	return l.segments.map(s => s.text).join('');
}
