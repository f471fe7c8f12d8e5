// RAII owners of the UCP/UCT/UCS handles the backend holds. Destructors never
// throw; owners are declared in dependency order by their users so that
// members are torn down in reverse (rkeys and memory before the worker, the
// worker before the context, the context before its config).
#ifndef TOKENRAIL_TRANSPORT_UCX_HANDLES_H_
#define TOKENRAIL_TRANSPORT_UCX_HANDLES_H_

#include <ucp/api/ucp.h>
#include <uct/api/uct.h>

#include <memory>
#include <utility>

namespace tokenrail {
namespace transport {
namespace ucx {

struct UcpConfigDeleter {
  void operator()(ucp_config_t* c) const { ucp_config_release(c); }
};
using UcpConfigPtr = std::unique_ptr<ucp_config_t, UcpConfigDeleter>;

struct UcpContextDeleter {
  void operator()(ucp_context_h c) const { ucp_cleanup(c); }
};
using UcpContextPtr = std::unique_ptr<std::remove_pointer_t<ucp_context_h>, UcpContextDeleter>;

struct UcpWorkerDeleter {
  void operator()(ucp_worker_h w) const { ucp_worker_destroy(w); }
};
using UcpWorkerPtr = std::unique_ptr<std::remove_pointer_t<ucp_worker_h>, UcpWorkerDeleter>;

struct UcpRkeyDeleter {
  void operator()(ucp_rkey_h k) const { ucp_rkey_destroy(k); }
};
using UcpRkeyPtr = std::unique_ptr<std::remove_pointer_t<ucp_rkey_h>, UcpRkeyDeleter>;

// A ucp_mem_map'ed range; unmapped (and freed, if UCP allocated it) on reset.
class UcpMem {
 public:
  UcpMem() = default;
  UcpMem(ucp_context_h ctx, ucp_mem_h memh) : ctx_(ctx), memh_(memh) {}
  UcpMem(UcpMem&& o) noexcept
      : ctx_(std::exchange(o.ctx_, nullptr)), memh_(std::exchange(o.memh_, nullptr)) {}
  UcpMem& operator=(UcpMem&& o) noexcept {
    if (this != &o) {
      Reset();
      ctx_ = std::exchange(o.ctx_, nullptr);
      memh_ = std::exchange(o.memh_, nullptr);
    }
    return *this;
  }
  UcpMem(const UcpMem&) = delete;
  UcpMem& operator=(const UcpMem&) = delete;
  ~UcpMem() { Reset(); }

  ucp_mem_h get() const { return memh_; }
  void Reset() {
    if (memh_ != nullptr) ucp_mem_unmap(ctx_, memh_);
    memh_ = nullptr;
  }

 private:
  ucp_context_h ctx_ = nullptr;
  ucp_mem_h memh_ = nullptr;
};

// Buffer returned by ucp_rkey_pack.
struct UcpRkeyBufferDeleter {
  void operator()(void* p) const { ucp_rkey_buffer_release(p); }
};
using UcpRkeyBuffer = std::unique_ptr<void, UcpRkeyBufferDeleter>;

// Address returned by ucp_worker_get_address.
class UcpWorkerAddress {
 public:
  UcpWorkerAddress(ucp_worker_h worker, ucp_address_t* addr, size_t len)
      : worker_(worker), addr_(addr), len_(len) {}
  UcpWorkerAddress(const UcpWorkerAddress&) = delete;
  UcpWorkerAddress& operator=(const UcpWorkerAddress&) = delete;
  ~UcpWorkerAddress() {
    if (addr_ != nullptr) ucp_worker_release_address(worker_, addr_);
  }
  const char* data() const { return reinterpret_cast<const char*>(addr_); }
  size_t size() const { return len_; }

 private:
  ucp_worker_h worker_;
  ucp_address_t* addr_;
  size_t len_;
};

// UCT handles, used only to query interface capabilities.
struct UctConfigDeleter {
  void operator()(void* c) const { uct_config_release(c); }
};
template <typename T>
using UctConfigPtr = std::unique_ptr<T, UctConfigDeleter>;

struct UctMdDeleter {
  void operator()(uct_md_h md) const { uct_md_close(md); }
};
using UctMdPtr = std::unique_ptr<std::remove_pointer_t<uct_md_h>, UctMdDeleter>;

struct UctIfaceDeleter {
  void operator()(uct_iface_h i) const { uct_iface_close(i); }
};
using UctIfacePtr = std::unique_ptr<std::remove_pointer_t<uct_iface_h>, UctIfaceDeleter>;

struct UctWorkerDeleter {
  void operator()(uct_worker_h w) const { uct_worker_destroy(w); }
};
using UctWorkerPtr = std::unique_ptr<std::remove_pointer_t<uct_worker_h>, UctWorkerDeleter>;

struct UcsAsyncDeleter {
  void operator()(ucs_async_context_t* a) const { ucs_async_context_destroy(a); }
};
using UcsAsyncPtr = std::unique_ptr<ucs_async_context_t, UcsAsyncDeleter>;

struct UctComponentListDeleter {
  void operator()(uct_component_h* l) const { uct_release_component_list(l); }
};
using UctComponentList = std::unique_ptr<uct_component_h, UctComponentListDeleter>;

struct UctTlResourceListDeleter {
  void operator()(uct_tl_resource_desc_t* l) const { uct_release_tl_resource_list(l); }
};
using UctTlResourceList = std::unique_ptr<uct_tl_resource_desc_t, UctTlResourceListDeleter>;

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_HANDLES_H_
