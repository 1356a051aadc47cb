// The kept rtnetlink socket against this host's kernel: RTM_GETLINK is
// answered to any user, and every network namespace has a loopback device.
import * as fs from 'node:fs';
import { NetlinkError, NetlinkRequestSocket } from '../../src/collectors/netlink';

const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const NLM_F_DUMP = 0x300;
const NLM_F_ACK = 0x4;
const ENODEV = 19;

/** struct ifinfomsg: family, pad, type, index (0: every link), flags, change. */
function ifinfomsg(index = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  return b;
}

/** The link indexes of a dump's RTM_NEWLINK messages. */
function linkIndexes(messages: { type: number; payload: Buffer }[]): number[] {
  return messages.filter((m) => m.type === RTM_NEWLINK).map((m) => m.payload.readInt32LE(4));
}

describe('NetlinkRequestSocket', () => {
  let socket: NetlinkRequestSocket;
  beforeEach(() => {
    socket = new NetlinkRequestSocket();
  });
  afterEach(() => {
    socket.close();
  });

  test('dumps on one socket, each dump answered whole', () => {
    const first = linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()));
    const fd = socket.descriptor;
    const second = linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()));
    expect(first).toContain(1);
    expect(second).toEqual(first);
    expect(fd).not.toBeNull();
    expect(socket.descriptor).toBe(fd);
  });

  test('a refusal by the kernel throws its errno and keeps the socket for the next request', () => {
    socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg());
    const fd = socket.descriptor;
    let refusal: unknown = null;
    try {
      socket.exchange(RTM_GETLINK, NLM_F_ACK, ifinfomsg(0x7fffffff));
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(NetlinkError);
    expect((refusal as NetlinkError).errno).toBe(ENODEV);
    expect(socket.descriptor).toBe(fd);
    expect(linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()))).toContain(1);
  });

  test('a socket broken since its last use is replaced, and the request still answered', () => {
    const before = linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()));
    fs.closeSync(socket.descriptor as number);
    expect(linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()))).toEqual(before);
    expect(socket.descriptor).not.toBeNull();
  });

  test('close() closes the socket and the next exchange opens another', () => {
    socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg());
    socket.close();
    expect(socket.descriptor).toBeNull();
    expect(linkIndexes(socket.exchange(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()))).toContain(1);
  });
});
