// Small reflection helpers shared by the config loader and the --set overrides: "did you mean"
// suggestions for misspelt field names, the list of valid field / enum names at one message level,
// and a readable rendering of one field's value for error messages.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <string>
#include <string_view>

namespace loom::config {

// Levenshtein distance (insert, delete, substitute each cost 1).
size_t edit_distance(std::string_view a, std::string_view b);

// The field names of `desc`, comma-separated in declaration order: "tp, pp, dp, ...".
std::string field_names(const google::protobuf::Descriptor& desc);

// The closest field name of `desc` to `name` if it is close enough to be a typo (distance <= 2, or
// <= a third of the length for long names); "" otherwise.
std::string closest_field(const google::protobuf::Descriptor& desc, std::string_view name);

// The enum's value names without the *_UNSET placeholder: "COSINE, LINEAR, CONSTANT".
std::string enum_names(const google::protobuf::EnumDescriptor& desc);

// The value of a singular scalar/enum field as text ("8", "0.5", "true", "\"path\"", "F16"), or
// "unset" when a field with presence is not set.
std::string field_value(const google::protobuf::Message& msg,
                        const google::protobuf::FieldDescriptor& field);

}  // namespace loom::config
