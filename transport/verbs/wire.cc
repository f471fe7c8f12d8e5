#include "transport/verbs/wire.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

constexpr size_t kMaxName = 256;
constexpr size_t kMaxDevice = 64;

void PutGid(ByteWriter& w, const Gid& gid) {
  for (uint8_t b : gid) w.Put<uint8_t>(b);
}

absl::StatusOr<Gid> GetGid(ByteReader& r) {
  Gid gid;
  for (uint8_t& b : gid) {
    TR_ASSIGN_OR_RETURN(b, r.Get<uint8_t>());
  }
  return gid;
}

absl::Status CheckMtu(uint16_t mtu, absl::string_view what) {
  if (mtu == 256 || mtu == 512 || mtu == 1024 || mtu == 2048 || mtu == 4096) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ": invalid MTU ", mtu));
}

absl::Status Invalid(absl::string_view what, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", problem));
}

}  // namespace

const char* LinkLayerName(LinkLayer l) { return l == LinkLayer::kEthernet ? "RoCE" : "IB"; }

std::string PackAddress(const AddressInfo& a) {
  ByteWriter w;
  w.Put<uint64_t>(a.context_id);
  w.PutBytes(a.name);
  w.Put<uint32_t>(a.ipv4);
  w.Put<uint16_t>(a.tcp_port);
  w.PutBytes(a.device);
  w.Put<uint8_t>(a.ib_port);
  w.Put<uint8_t>(static_cast<uint8_t>(a.link_layer));
  w.Put<uint16_t>(a.lid);
  PutGid(w, a.gid);
  w.Put<uint16_t>(a.mtu);
  return SealBlob(kAddressMagic, kWireVersion, w.data());
}

absl::StatusOr<AddressInfo> UnpackAddress(absl::string_view blob) {
  constexpr absl::string_view kWhat = "verbs address";
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kAddressMagic, kWireVersion, kWhat));
  ByteReader r(payload, kWhat);
  AddressInfo a;
  TR_ASSIGN_OR_RETURN(a.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(kMaxName));
  a.name = std::string(name);
  TR_ASSIGN_OR_RETURN(a.ipv4, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(a.tcp_port, r.Get<uint16_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view device, r.GetBytes(kMaxDevice));
  a.device = std::string(device);
  TR_ASSIGN_OR_RETURN(a.ib_port, r.Get<uint8_t>());
  TR_ASSIGN_OR_RETURN(const uint8_t ll, r.Get<uint8_t>());
  TR_ASSIGN_OR_RETURN(a.lid, r.Get<uint16_t>());
  TR_ASSIGN_OR_RETURN(a.gid, GetGid(r));
  TR_ASSIGN_OR_RETURN(a.mtu, r.Get<uint16_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (a.context_id == 0) return Invalid(kWhat, "context id is 0");
  if (a.tcp_port == 0) return Invalid(kWhat, "wireup port is 0");
  if (a.ib_port == 0) return Invalid(kWhat, "port number is 0");
  if (ll != static_cast<uint8_t>(LinkLayer::kInfiniBand) &&
      ll != static_cast<uint8_t>(LinkLayer::kEthernet)) {
    return Invalid(kWhat, absl::StrCat("unknown link layer ", ll));
  }
  a.link_layer = static_cast<LinkLayer>(ll);
  TR_RETURN_IF_ERROR(CheckMtu(a.mtu, kWhat));
  return a;
}

std::string PackQpInfo(const QpInfo& q) {
  ByteWriter w;
  w.Put<uint64_t>(q.context_id);
  w.Put<uint16_t>(q.lid);
  PutGid(w, q.gid);
  w.Put<uint32_t>(q.qpn);
  w.Put<uint32_t>(q.psn);
  w.Put<uint16_t>(q.mtu);
  w.Put<uint32_t>(q.recv_depth);
  w.Put<uint64_t>(q.credit_addr);
  w.Put<uint32_t>(q.credit_rkey);
  return SealBlob(kQpMagic, kWireVersion, w.data());
}

absl::StatusOr<QpInfo> UnpackQpInfo(absl::string_view blob) {
  constexpr absl::string_view kWhat = "verbs QP blob";
  TR_ASSIGN_OR_RETURN(absl::string_view payload, UnsealBlob(blob, kQpMagic, kWireVersion, kWhat));
  ByteReader r(payload, kWhat);
  QpInfo q;
  TR_ASSIGN_OR_RETURN(q.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(q.lid, r.Get<uint16_t>());
  TR_ASSIGN_OR_RETURN(q.gid, GetGid(r));
  TR_ASSIGN_OR_RETURN(q.qpn, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(q.psn, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(q.mtu, r.Get<uint16_t>());
  TR_ASSIGN_OR_RETURN(q.recv_depth, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(q.credit_addr, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(q.credit_rkey, r.Get<uint32_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (q.context_id == 0) return Invalid(kWhat, "context id is 0");
  if (q.qpn == 0 || q.qpn > 0xffffff) return Invalid(kWhat, absl::StrCat("invalid QPN ", q.qpn));
  if (q.psn > 0xffffff) return Invalid(kWhat, absl::StrCat("PSN ", q.psn, " exceeds 24 bits"));
  TR_RETURN_IF_ERROR(CheckMtu(q.mtu, kWhat));
  if (q.recv_depth == 0 || q.recv_depth > (1u << 20)) {
    return Invalid(kWhat, absl::StrCat("invalid receive depth ", q.recv_depth));
  }
  if (q.credit_addr == 0 || q.credit_addr % 8 != 0) {
    return Invalid(kWhat, absl::StrCat("invalid credit word address 0x", absl::Hex(q.credit_addr)));
  }
  return q;
}

std::string PackRemoteKey(const RemoteKeyInfo& k) {
  ByteWriter w;
  w.Put<uint64_t>(k.context_id);
  w.Put<uint64_t>(k.region_id);
  w.Put<uint64_t>(k.cookie);
  w.Put<uint64_t>(k.addr);
  w.Put<uint64_t>(k.size);
  w.Put<uint32_t>(k.rkey);
  return SealBlob(kKeyMagic, kWireVersion, w.data());
}

absl::StatusOr<RemoteKeyInfo> UnpackRemoteKey(absl::string_view blob) {
  constexpr absl::string_view kWhat = "verbs remote key";
  TR_ASSIGN_OR_RETURN(absl::string_view payload, UnsealBlob(blob, kKeyMagic, kWireVersion, kWhat));
  ByteReader r(payload, kWhat);
  RemoteKeyInfo k;
  TR_ASSIGN_OR_RETURN(k.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.region_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.cookie, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.addr, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.size, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.rkey, r.Get<uint32_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (k.context_id == 0) return Invalid(kWhat, "context id is 0");
  if (k.region_id == 0) return Invalid(kWhat, "region id is 0");
  if (k.addr + k.size < k.addr) {
    return Invalid(kWhat, absl::StrCat("range 0x", absl::Hex(k.addr), "+", k.size, " wraps"));
  }
  return k;
}

std::string PackWireupFrame(const WireupFrame& f) {
  ByteWriter w;
  w.Put<uint8_t>(static_cast<uint8_t>(f.type));
  w.Put<uint64_t>(f.from_context);
  w.Put<uint64_t>(f.to_context);
  w.PutBytes(f.from_name);
  w.PutBytes(f.body);
  return SealBlob(kWireupMagic, kWireVersion, w.data());
}

absl::StatusOr<WireupFrame> UnpackWireupFrame(absl::string_view blob) {
  constexpr absl::string_view kWhat = "verbs wireup frame";
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kWireupMagic, kWireVersion, kWhat));
  ByteReader r(payload, kWhat);
  WireupFrame f;
  TR_ASSIGN_OR_RETURN(const uint8_t type, r.Get<uint8_t>());
  if (type < static_cast<uint8_t>(WireupType::kHello) ||
      type > static_cast<uint8_t>(WireupType::kReady)) {
    return Invalid(kWhat, absl::StrCat("unknown frame type ", type));
  }
  f.type = static_cast<WireupType>(type);
  TR_ASSIGN_OR_RETURN(f.from_context, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(f.to_context, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(kMaxName));
  f.from_name = std::string(name);
  TR_ASSIGN_OR_RETURN(absl::string_view body, r.GetBytes(kMaxWireupFrame));
  f.body = std::string(body);
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (f.from_context == 0 || f.to_context == 0) return Invalid(kWhat, "context id is 0");
  return f;
}

namespace {

std::string Header(InbandType type) {
  std::string h(kInbandHeaderSize, '\0');
  h[0] = static_cast<char>(type);
  return h;
}

}  // namespace

std::string EncodeUserMessage(absl::string_view payload) {
  std::string out = Header(InbandType::kUser);
  out.append(payload.data(), payload.size());
  return out;
}

std::string EncodeKeyQuery(uint64_t request_id, const RemoteKeyInfo& key) {
  ByteWriter w;
  w.Put<uint64_t>(request_id);
  w.Put<uint64_t>(key.region_id);
  w.Put<uint64_t>(key.cookie);
  w.Put<uint64_t>(key.addr);
  w.Put<uint64_t>(key.size);
  w.Put<uint32_t>(key.rkey);
  return Header(InbandType::kKeyQuery) + w.data();
}

std::string EncodeKeyReply(uint64_t request_id, bool ok, absl::string_view reason) {
  ByteWriter w;
  w.Put<uint64_t>(request_id);
  w.Put<uint8_t>(ok ? 1 : 0);
  w.PutBytes(reason.substr(0, 1024));
  return Header(InbandType::kKeyReply) + w.data();
}

std::string EncodePutDone(uint32_t imm, uint64_t length) {
  ByteWriter w;
  w.Put<uint32_t>(imm);
  w.Put<uint64_t>(length);
  return Header(InbandType::kPutDone) + w.data();
}

absl::StatusOr<InbandMessage> ParseInband(absl::string_view data) {
  constexpr absl::string_view kWhat = "verbs control message";
  if (data.size() < kInbandHeaderSize) {
    return Invalid(kWhat, absl::StrCat("only ", data.size(), " bytes, no header"));
  }
  InbandMessage m;
  const uint8_t type = static_cast<uint8_t>(data[0]);
  for (size_t i = 1; i < kInbandHeaderSize; ++i) {
    if (data[i] != 0) return Invalid(kWhat, "nonzero reserved header bytes");
  }
  ByteReader r(data.substr(kInbandHeaderSize), kWhat);
  switch (type) {
    case static_cast<uint8_t>(InbandType::kUser):
      m.type = InbandType::kUser;
      if (data.size() - kInbandHeaderSize > kMaxMessageSize) {
        return Invalid(kWhat, absl::StrCat("payload of ", data.size() - kInbandHeaderSize,
                                           " bytes exceeds ", kMaxMessageSize));
      }
      m.payload = data.substr(kInbandHeaderSize);
      return m;
    case static_cast<uint8_t>(InbandType::kKeyQuery): {
      m.type = InbandType::kKeyQuery;
      TR_ASSIGN_OR_RETURN(m.request_id, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(m.key.region_id, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(m.key.cookie, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(m.key.addr, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(m.key.size, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(m.key.rkey, r.Get<uint32_t>());
      break;
    }
    case static_cast<uint8_t>(InbandType::kKeyReply): {
      m.type = InbandType::kKeyReply;
      TR_ASSIGN_OR_RETURN(m.request_id, r.Get<uint64_t>());
      TR_ASSIGN_OR_RETURN(const uint8_t ok, r.Get<uint8_t>());
      if (ok > 1) return Invalid(kWhat, absl::StrCat("key reply flag ", ok));
      m.ok = ok == 1;
      TR_ASSIGN_OR_RETURN(absl::string_view reason, r.GetBytes(1024));
      m.reason = std::string(reason);
      break;
    }
    case static_cast<uint8_t>(InbandType::kPutDone): {
      m.type = InbandType::kPutDone;
      TR_ASSIGN_OR_RETURN(m.imm, r.Get<uint32_t>());
      TR_ASSIGN_OR_RETURN(m.length, r.Get<uint64_t>());
      break;
    }
    default:
      return Invalid(kWhat, absl::StrCat("unknown message type ", type));
  }
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
