// A MIB view shaped like VM-MIB's tables, for view tests and bench:check.
import { MibView, MibViewBuilder } from '../../agentx/view';
import { ValueType } from '../../agentx/pdu';

/** `count` 13-sub-id instances over 30 columns, in ascending order, as the VM-MIB view builder produces them. */
export function vmLikeView(count: number): MibView {
  const builder = new MibViewBuilder();
  const columns = 30;
  const rows = Math.ceil(count / columns);
  let added = 0;
  for (let column = 1; column <= columns; column++) {
    builder.declareObject([1, 3, 6, 1, 2, 1, 236, 1, 3, 1, column]);
    for (let row = 1; row <= rows && added < count; row++, added++) {
      builder.add([1, 3, 6, 1, 2, 1, 236, 1, 3, 1, column, row, 7], { type: ValueType.Integer, value: row });
    }
  }
  return builder.build();
}
