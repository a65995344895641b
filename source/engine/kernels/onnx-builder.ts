// A tiny hand-written encoder for the subset of the ONNX protobuf schema the engine's kernels
// need (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto with symbolic dims).
// Building the graphs at runtime keeps binary model files out of the repo and avoids a protobuf
// dependency; field numbers follow onnx/onnx.proto.

/** TensorProto.DataType values used here. */
export const onnxType = {
	float: 1,
	int64: 7,
	float16: 10,
	double: 11,
} as const;

export type OnnxElemType = (typeof onnxType)[keyof typeof onnxType];

export type AttributeValue =
	| {kind: 'int'; value: number}
	| {kind: 'float'; value: number}
	| {kind: 'ints'; value: number[]};

export type OnnxNode = {
	opType: string;
	inputs: string[];
	outputs: string[];
	attributes?: Record<string, AttributeValue>;
};

export type OnnxValue = {
	name: string;
	elemType: OnnxElemType;
	/** Numbers are fixed sizes, strings are symbolic dimension names. */
	dims: Array<number | string>;
};

export type OnnxGraph = {
	name: string;
	nodes: OnnxNode[];
	inputs: OnnxValue[];
	outputs: OnnxValue[];
	opset?: number;
};

const textEncoder = new TextEncoder();

/** Growable byte sink with protobuf wire-format primitives. */
class ProtoWriter {
	private bytes: number[] = [];

	varint(value: number | bigint): void {
		let v = BigInt.asUintN(64, BigInt(value));
		while (v >= 0x80n) {
			this.bytes.push(Number(v & 0x7Fn) | 0x80);
			v >>= 7n;
		}

		this.bytes.push(Number(v));
	}

	tag(field: number, wireType: number): void {
		this.varint((field << 3) | wireType);
	}

	intField(field: number, value: number): void {
		this.tag(field, 0);
		this.varint(value);
	}

	floatField(field: number, value: number): void {
		this.tag(field, 5);
		const buffer = new DataView(new ArrayBuffer(4));
		buffer.setFloat32(0, value, true);
		for (let i = 0; i < 4; i++) {
			this.bytes.push(buffer.getUint8(i));
		}
	}

	bytesField(field: number, value: Uint8Array): void {
		this.tag(field, 2);
		this.varint(value.length);
		for (const byte of value) {
			this.bytes.push(byte);
		}
	}

	stringField(field: number, value: string): void {
		this.bytesField(field, textEncoder.encode(value));
	}

	messageField(field: number, build: (writer: ProtoWriter) => void): void {
		const inner = new ProtoWriter();
		build(inner);
		this.bytesField(field, inner.finish());
	}

	finish(): Uint8Array {
		return Uint8Array.from(this.bytes);
	}
}

// AttributeProto.AttributeType
const attributeType = {float: 1, int: 2, ints: 7} as const;

function writeAttribute(w: ProtoWriter, name: string, attribute: AttributeValue): void {
	w.stringField(1, name);
	switch (attribute.kind) {
		case 'float': {
			w.floatField(2, attribute.value);
			w.intField(20, attributeType.float);
			break;
		}

		case 'int': {
			w.intField(3, attribute.value);
			w.intField(20, attributeType.int);
			break;
		}

		case 'ints': {
			for (const value of attribute.value) {
				w.intField(8, value);
			}

			w.intField(20, attributeType.ints);
			break;
		}
	}
}

function writeValueInfo(w: ProtoWriter, value: OnnxValue): void {
	w.stringField(1, value.name);
	w.messageField(2, type => {
		type.messageField(1, tensorType => {
			tensorType.intField(1, value.elemType);
			tensorType.messageField(2, shape => {
				for (const dim of value.dims) {
					shape.messageField(1, d => {
						if (typeof dim === 'number') {
							d.intField(1, dim);
						} else {
							d.stringField(2, dim);
						}
					});
				}
			});
		});
	});
}

function writeNode(w: ProtoWriter, node: OnnxNode, index: number): void {
	for (const input of node.inputs) {
		w.stringField(1, input);
	}

	for (const output of node.outputs) {
		w.stringField(2, output);
	}

	w.stringField(3, `${node.opType.toLowerCase()}_${index}`);
	w.stringField(4, node.opType);
	for (const [name, attribute] of Object.entries(node.attributes ?? {})) {
		w.messageField(5, a => {
			writeAttribute(a, name, attribute);
		});
	}
}

/** Serialises a single-graph ONNX model (default domain, opset 17 unless given). */
export function encodeModel(graph: OnnxGraph): Uint8Array {
	const model = new ProtoWriter();
	// IR version 8 is the one that goes with opset 17.
	model.intField(1, 8);
	model.stringField(2, 'lorascope');
	model.messageField(7, g => {
		for (const [index, node] of graph.nodes.entries()) {
			g.messageField(1, n => {
				writeNode(n, node, index);
			});
		}

		g.stringField(2, graph.name);
		for (const input of graph.inputs) {
			g.messageField(11, v => {
				writeValueInfo(v, input);
			});
		}

		for (const output of graph.outputs) {
			g.messageField(12, v => {
				writeValueInfo(v, output);
			});
		}
	});
	model.messageField(8, opset => {
		opset.stringField(1, '');
		opset.intField(2, graph.opset ?? 17);
	});
	return model.finish();
}
