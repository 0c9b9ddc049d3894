// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice What the registry asks the marketplace before returning a stake.
interface IJobClaims {
    /// @notice Claimed jobs of `host` not yet finished.
    function openClaims(address host) external view returns (uint256);
}

/// @title NodeRegistry
/// @notice Hosts register here by staking FAB with their libp2p peer id, the models they serve,
/// a price per token for each payment token, and a metadata string. Unregistering starts an
/// unbonding delay after which the stake can be withdrawn, and never while the host holds
/// claimed jobs: the registry asks the marketplace (bound once, at deployment) how many claims
/// the host holds.
///
/// A peer id is not exclusive: registering one proves no ownership of its libp2p key, so
/// exclusivity would let anyone lock a host out by registering its public peer id first.
/// Clients go from address to peer id (`getNode`) and check the peer id against the
/// connection and the host's signed identity, never from peer id to address.
contract NodeRegistry is Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Most models one node may serve (keeps every loop bounded).
    uint256 public constant MAX_MODELS = 32;
    /// @notice Most payment tokens one node may price.
    uint256 public constant MAX_PRICES = 16;
    /// @notice Longest peer id accepted, in bytes.
    uint256 public constant MAX_PEER_ID = 128;
    /// @notice Longest metadata accepted, in bytes.
    uint256 public constant MAX_METADATA = 1024;
    /// @notice Longest unbonding delay the owner may set.
    uint64 public constant MAX_UNBONDING_DELAY = 365 days;

    /// @notice A node as returned by views.
    struct Node {
        address operator;
        bytes peerId;
        bytes32[] models;
        address[] priceTokens;
        uint256[] prices;
        string metadata;
        uint256 stake;
        bool active;
        uint64 unbondingEnd;
    }

    // Slot 0 packs the stake, the unbonding end and the active flag.
    struct NodeRecord {
        uint128 stake;
        uint64 unbondingEnd;
        bool active;
        bytes peerId;
        bytes32[] models;
        address[] priceTokens;
        string metadata;
    }

    /// @notice The FAB token staked by hosts.
    IERC20 public immutable stakeToken;
    /// @notice Minimum stake to register, in FAB base units.
    uint256 public minStake;
    /// @notice Seconds between `unregister` and `withdrawStake`.
    uint64 public unbondingDelay;
    /// @notice The marketplace whose open claims lock stakes (set once).
    address public marketplace;

    mapping(address => NodeRecord) private _nodes;
    mapping(address => mapping(bytes32 => bool)) private _serves;
    mapping(address => mapping(address => uint256)) private _prices;
    mapping(bytes32 => address[]) private _modelNodes;
    mapping(bytes32 => mapping(address => uint256)) private _modelIndex; // 1-based

    /// @notice The caller has a record already (registered or unbonding).
    error AlreadyRegistered(address node);
    /// @notice The address has no active registration.
    error NotRegistered(address node);
    /// @notice The stake is below the minimum.
    error StakeTooLow(uint256 stake, uint256 minimum);
    /// @notice The stake does not fit the packed storage (uint128).
    error StakeTooHigh(uint256 stake);
    /// @notice The peer id is empty or too long.
    error InvalidPeerId();
    /// @notice Too many models, or a duplicate or zero model id.
    error InvalidModels();
    /// @notice Token and price lists differ in length, are too long, or repeat a token.
    error InvalidPrices();
    /// @notice The metadata string is too long.
    error MetadataTooLong(uint256 length);
    /// @notice The node is still unbonding.
    error StillUnbonding(uint64 unbondingEnd);
    /// @notice The node must unregister before withdrawing.
    error NotUnbonding(address node);
    /// @notice The stake is locked by claimed jobs the node has not finished.
    error StakeLocked(uint256 openClaims);
    /// @notice The unbonding delay is above `MAX_UNBONDING_DELAY`.
    error UnbondingDelayTooLong(uint64 delay);
    /// @notice The marketplace is bound already, or the address is zero.
    error MarketplaceAlreadyBound(address marketplace);
    /// @notice Ownership cannot be renounced: the registry would lose its configuration.
    error RenounceDisabled();

    /// @notice A node registered.
    /// Followed by ModelsUpdated, PriceUpdated and MetadataUpdated for its initial settings.
    event NodeRegistered(address indexed node, bytes peerId, uint256 stake);
    /// @notice A node changed the models it serves.
    event ModelsUpdated(address indexed node, bytes32[] models);
    /// @notice A node set its price for a payment token (address(0) is ETH).
    event PriceUpdated(address indexed node, address indexed token, uint256 pricePerToken);
    /// @notice A node changed its metadata.
    event MetadataUpdated(address indexed node, string metadata);
    /// @notice A node unregistered; its stake unlocks at `unbondingEnd`.
    event NodeUnregistered(address indexed node, uint64 unbondingEnd);
    /// @notice A node withdrew its stake.
    event StakeWithdrawn(address indexed node, uint256 amount);
    /// @notice The owner changed the minimum stake.
    event MinStakeChanged(uint256 minStake);
    /// @notice The owner changed the unbonding delay.
    event UnbondingDelayChanged(uint64 delay);
    /// @notice The marketplace was bound.
    event MarketplaceBound(address marketplace);

    constructor(address owner_, IERC20 stakeToken_, uint256 minStake_, uint64 unbondingDelay_) Ownable(owner_) {
        if (unbondingDelay_ > MAX_UNBONDING_DELAY) revert UnbondingDelayTooLong(unbondingDelay_);
        stakeToken = stakeToken_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
    }

    // ----- owner -----

    /// @notice Sets the minimum stake for new registrations.
    function setMinStake(uint256 minStake_) external onlyOwner {
        minStake = minStake_;
        emit MinStakeChanged(minStake_);
    }

    /// @notice Sets the unbonding delay for future unregistrations.
    function setUnbondingDelay(uint64 delay) external onlyOwner {
        if (delay > MAX_UNBONDING_DELAY) revert UnbondingDelayTooLong(delay);
        unbondingDelay = delay;
        emit UnbondingDelayChanged(delay);
    }

    /// @notice Binds the marketplace whose claims lock stakes; once, at deployment.
    function setMarketplace(address marketplace_) external onlyOwner {
        if (marketplace != address(0) || marketplace_ == address(0)) revert MarketplaceAlreadyBound(marketplace);
        marketplace = marketplace_;
        emit MarketplaceBound(marketplace_);
    }

    /// @notice Disabled: see `RenounceDisabled`.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceDisabled();
    }

    // ----- host -----

    /// @notice Registers the caller, pulling `stake` FAB (approve this contract first).
    function register(
        bytes calldata peerId,
        bytes32[] calldata models,
        address[] calldata priceTokens,
        uint256[] calldata prices,
        string calldata metadata,
        uint256 stake
    ) external nonReentrant {
        NodeRecord storage node = _nodes[msg.sender];
        if (node.stake != 0 || node.active) revert AlreadyRegistered(msg.sender);
        if (stake < minStake || stake == 0) revert StakeTooLow(stake, minStake);
        if (stake > type(uint128).max) revert StakeTooHigh(stake);
        if (peerId.length == 0 || peerId.length > MAX_PEER_ID) revert InvalidPeerId();
        node.stake = uint128(stake);
        node.active = true;
        node.unbondingEnd = 0;
        node.peerId = peerId;
        stakeToken.safeTransferFrom(msg.sender, address(this), stake);
        emit NodeRegistered(msg.sender, peerId, stake);
        _setModels(msg.sender, node, models);
        _setPrices(msg.sender, node, priceTokens, prices);
        _setMetadata(node, metadata);
    }

    /// @notice Replaces the list of models the caller serves.
    function updateModels(bytes32[] calldata models) external {
        NodeRecord storage node = _activeNode(msg.sender);
        _clearModels(msg.sender, node);
        _setModels(msg.sender, node, models);
    }

    /// @notice Sets prices for the given payment tokens (a price of zero removes the token).
    function setPrices(address[] calldata priceTokens, uint256[] calldata prices) external {
        NodeRecord storage node = _activeNode(msg.sender);
        _setPrices(msg.sender, node, priceTokens, prices);
    }

    /// @notice Replaces the caller's metadata.
    function updateMetadata(string calldata metadata) external {
        _setMetadata(_activeNode(msg.sender), metadata);
    }

    /// @notice Deactivates the caller and starts the unbonding delay.
    function unregister() external {
        NodeRecord storage node = _activeNode(msg.sender);
        _clearModels(msg.sender, node);
        node.active = false;
        uint64 end = uint64(block.timestamp) + unbondingDelay;
        node.unbondingEnd = end;
        emit ModelsUpdated(msg.sender, new bytes32[](0));
        emit NodeUnregistered(msg.sender, end);
    }

    /// @notice Returns the caller's stake after unbonding and deletes its record.
    function withdrawStake() external nonReentrant {
        NodeRecord storage node = _nodes[msg.sender];
        if (node.active || node.stake == 0) revert NotUnbonding(msg.sender);
        if (block.timestamp < node.unbondingEnd) revert StillUnbonding(node.unbondingEnd);
        address market = marketplace;
        if (market != address(0)) {
            uint256 claims = IJobClaims(market).openClaims(msg.sender);
            if (claims != 0) revert StakeLocked(claims);
        }
        uint256 amount = node.stake;
        address[] storage tokens = node.priceTokens;
        for (uint256 i = 0; i < tokens.length; ++i) {
            delete _prices[msg.sender][tokens[i]];
        }
        delete _nodes[msg.sender];
        stakeToken.safeTransfer(msg.sender, amount);
        emit StakeWithdrawn(msg.sender, amount);
    }

    // ----- views -----

    /// @notice The node registered by `operator` (an empty record when there is none).
    function getNode(address operator) external view returns (Node memory out) {
        NodeRecord storage node = _nodes[operator];
        out.operator = operator;
        out.peerId = node.peerId;
        out.models = node.models;
        out.priceTokens = node.priceTokens;
        out.prices = new uint256[](node.priceTokens.length);
        for (uint256 i = 0; i < node.priceTokens.length; ++i) {
            out.prices[i] = _prices[operator][node.priceTokens[i]];
        }
        out.metadata = node.metadata;
        out.stake = node.stake;
        out.active = node.active;
        out.unbondingEnd = node.unbondingEnd;
    }

    /// @notice Whether `node` is registered and active.
    function isActive(address node) external view returns (bool) {
        return _nodes[node].active;
    }

    /// @notice Whether `node` is active and serves `modelId` (what the marketplace checks).
    function canServe(address node, bytes32 modelId) external view returns (bool) {
        return _serves[node][modelId];
    }

    /// @notice The price per token `node` asks in `token` (address(0) is ETH); zero if none.
    function priceOf(address node, address token) external view returns (uint256) {
        return _prices[node][token];
    }

    /// @notice How many active nodes serve `modelId`.
    function nodeCountForModel(bytes32 modelId) external view returns (uint256) {
        return _modelNodes[modelId].length;
    }

    /// @notice One page of the active nodes serving `modelId`, and the total count.
    function nodesForModel(bytes32 modelId, uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory page, uint256 total)
    {
        address[] storage all = _modelNodes[modelId];
        total = all.length;
        if (offset >= total) return (new address[](0), total);
        uint256 end = limit > total - offset ? total : offset + limit;
        page = new address[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            page[i - offset] = all[i];
        }
    }

    // ----- internal -----

    function _activeNode(address operator) private view returns (NodeRecord storage node) {
        node = _nodes[operator];
        if (!node.active) revert NotRegistered(operator);
    }

    function _setMetadata(NodeRecord storage node, string calldata metadata) private {
        if (bytes(metadata).length > MAX_METADATA) revert MetadataTooLong(bytes(metadata).length);
        node.metadata = metadata;
        emit MetadataUpdated(msg.sender, metadata);
    }

    function _setModels(address operator, NodeRecord storage node, bytes32[] calldata models) private {
        if (models.length > MAX_MODELS) revert InvalidModels();
        for (uint256 i = 0; i < models.length; ++i) {
            bytes32 model = models[i];
            if (model == bytes32(0) || _serves[operator][model]) revert InvalidModels();
            _serves[operator][model] = true;
            _modelNodes[model].push(operator);
            _modelIndex[model][operator] = _modelNodes[model].length;
            node.models.push(model);
        }
        emit ModelsUpdated(operator, models);
    }

    function _clearModels(address operator, NodeRecord storage node) private {
        bytes32[] storage models = node.models;
        for (uint256 i = 0; i < models.length; ++i) {
            bytes32 model = models[i];
            delete _serves[operator][model];
            address[] storage list = _modelNodes[model];
            uint256 index = _modelIndex[model][operator];
            uint256 last = list.length;
            if (index != last) {
                address moved = list[last - 1];
                list[index - 1] = moved;
                _modelIndex[model][moved] = index;
            }
            list.pop();
            delete _modelIndex[model][operator];
        }
        delete node.models;
    }

    function _setPrices(
        address operator,
        NodeRecord storage node,
        address[] calldata priceTokens,
        uint256[] calldata prices
    ) private {
        if (priceTokens.length != prices.length) revert InvalidPrices();
        for (uint256 i = 0; i < priceTokens.length; ++i) {
            address token = priceTokens[i];
            uint256 price = prices[i];
            bool listed = _prices[operator][token] != 0;
            if (price != 0 && !listed) {
                if (node.priceTokens.length >= MAX_PRICES) revert InvalidPrices();
                node.priceTokens.push(token);
            } else if (price == 0 && listed) {
                address[] storage list = node.priceTokens;
                for (uint256 j = 0; j < list.length; ++j) {
                    if (list[j] == token) {
                        list[j] = list[list.length - 1];
                        list.pop();
                        break;
                    }
                }
            }
            _prices[operator][token] = price;
            emit PriceUpdated(operator, token, price);
        }
    }
}
