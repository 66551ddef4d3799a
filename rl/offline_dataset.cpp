#include "rl/offline_dataset.h"

#include <stdexcept>

namespace namm {

std::vector<EpisodeRange> OfflineDataset::episodes() const { throw std::logic_error("not written yet"); }
void OfflineDataset::validate(const std::string&) const { throw std::logic_error("not written yet"); }
void save_offline_dataset(const OfflineDataset&, const std::string&) { throw std::logic_error("not written yet"); }
OfflineDataset load_offline_dataset(const std::string&) { throw std::logic_error("not written yet"); }

}  // namespace namm
