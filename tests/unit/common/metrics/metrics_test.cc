#include "common/metrics/metrics.h"

#include "gtest/gtest.h"

namespace portico {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndLabelsInPrometheusText) {
  Registry r;
  Counter* pushes_ok = r.AddCounter("sync_push_total", "Pushes by result.", {{"result", "ack"}});
  Counter* pushes_nack = r.AddCounter("sync_push_total", "Pushes by result.", {{"result", "nack"}});
  EXPECT_EQ(pushes_ok, r.AddCounter("sync_push_total", "Pushes by result.", {{"result", "ack"}}));
  pushes_ok->Inc(3);
  pushes_nack->Inc();
  r.AddGauge("dp_config_version", "Version served.")->Set(42);
  r.AddCallbackGauge("streams", "Open streams.", [] { return 7.0; });
  uint64_t requests = 5;
  r.AddCallbackCounter("requests_total", "Requests.", [&requests] { return static_cast<double>(requests); });
  requests = 9;  // read at render time
  std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE requests_total counter\nrequests_total 9\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE streams gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE sync_push_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sync_push_total{result=\"ack\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sync_push_total{result=\"nack\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dp_config_version 42\n"), std::string::npos) << text;
  EXPECT_NE(text.find("streams 7\n"), std::string::npos) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  Histogram* h = r.AddHistogram("build_seconds", "Build time.", {0.1, 1});
  h->Observe(0.05);
  h->Observe(0.5);
  h->Observe(5);
  std::string text = r.Render();
  EXPECT_NE(text.find("build_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("build_seconds_bucket{le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("build_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("build_seconds_count 3\n"), std::string::npos) << text;
  EXPECT_DOUBLE_EQ(h->sum(), 5.55);
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace portico
