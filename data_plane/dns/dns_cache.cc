#include "data_plane/dns/dns_cache.h"

#include <algorithm>

namespace portico::dp {

DnsCache::Result DnsCache::Get(DnsKeyView key, int64_t now_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end()) it = entries_.try_emplace(DnsKey{std::string(key.name), key.port}).first;
  Entry& e = it->second;
  e.last_used_ms = now_ms;
  Result r;
  if (!e.in_flight && now_ms >= e.refresh_at_ms) {
    e.in_flight = true;
    r.start_query = true;
  }
  r.pending = e.in_flight;
  if (e.answer != nullptr) r.answer = &e.answer;
  return r;
}

std::vector<DnsCache::Waiter> DnsCache::Complete(DnsKeyView key, DnsOutcome outcome, DnsAnswerPtr answer,
                                                 int64_t ttl_s, int64_t now_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return {};
  Entry& e = it->second;
  e.in_flight = false;
  switch (outcome) {
    case DnsOutcome::kAnswer: {
      const int64_t ttl = std::clamp<int64_t>(ttl_s * 1000, options_.min_ttl_ms, options_.max_ttl_ms);
      e.answer = std::move(answer);
      e.error_retry_ms = 0;
      e.refresh_at_ms = now_ms + ttl - std::min<int64_t>(ttl / 4, 1000);
      break;
    }
    case DnsOutcome::kNotFound:
      e.answer = nullptr;
      e.error_retry_ms = 0;
      e.refresh_at_ms = now_ms + options_.not_found_ttl_ms;
      break;
    case DnsOutcome::kError:
      e.error_retry_ms = e.error_retry_ms == 0 ? options_.error_retry_ms
                                               : std::min(e.error_retry_ms * 2, options_.max_error_retry_ms);
      e.refresh_at_ms = now_ms + e.error_retry_ms;
      break;
  }
  std::vector<Waiter> out;
  out.reserve(e.waiters.size());
  for (auto& [ticket, waiter] : e.waiters) {
    tickets_.erase(ticket);
    out.push_back(std::move(waiter));
  }
  e.waiters.clear();
  return out;
}

uint64_t DnsCache::Wait(DnsKeyView key, Waiter waiter) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  const uint64_t ticket = next_ticket_++;
  it->second.waiters.emplace_back(ticket, std::move(waiter));
  tickets_.emplace(ticket, it->first);
  return ticket;
}

void DnsCache::CancelWait(uint64_t ticket) {
  auto t = tickets_.find(ticket);
  if (t == tickets_.end()) return;
  auto it = entries_.find(t->second.view());
  tickets_.erase(t);
  if (it == entries_.end()) return;
  auto& w = it->second.waiters;
  w.erase(std::remove_if(w.begin(), w.end(), [ticket](const auto& p) { return p.first == ticket; }), w.end());
}

std::vector<DnsKey> DnsCache::SetConfigNames(const std::vector<DnsKey>& names, int64_t now_ms) {
  for (auto& [key, e] : entries_) e.in_config = false;
  std::vector<DnsKey> due;
  for (const DnsKey& k : names) {
    Entry& e = entries_[k];
    if (e.last_used_ms == 0) e.last_used_ms = now_ms;
    e.in_config = true;
    if (!e.in_flight && now_ms >= e.refresh_at_ms) {
      e.in_flight = true;
      due.push_back(k);
    }
  }
  return due;
}

std::vector<DnsKey> DnsCache::Maintain(int64_t now_ms) {
  std::vector<DnsKey> due;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    const int64_t idle = now_ms - e.last_used_ms;
    if (!e.in_config && !e.in_flight && e.waiters.empty() && idle > options_.keep_unused_ms) {
      entries_.erase(it++);
      continue;
    }
    if (!e.in_flight && now_ms >= e.refresh_at_ms && (e.in_config || idle <= options_.refresh_unused_ms)) {
      e.in_flight = true;
      due.push_back(it->first);
    }
    ++it;
  }
  return due;
}

void DnsCache::ExpireAll() {
  for (auto& [key, e] : entries_) e.refresh_at_ms = 0;
}

void DnsCache::AbandonQueries() {
  for (auto& [key, e] : entries_) {
    e.in_flight = false;
    e.waiters.clear();
  }
  tickets_.clear();
}

DnsAnswerPtr DnsCache::Peek(DnsKeyView key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.answer;
}

}  // namespace portico::dp
