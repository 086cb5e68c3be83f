// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title IdentityRegistry: kube402's own ERC-8004 identity registry for local chains.
/// @notice Implements the identity-registry interface of ERC-8004 (January 2026 revision) from the EIP text: an
///         ERC-721 whose tokenId is the agentId and whose tokenURI is the agentURI, free-form bytes metadata, and the
///         reserved "agentWallet" key. Not upgradeable; not the reference implementation.
/// @dev The runtime code is copied to the canonical testnet address with anvil_setCode, which moves no storage:
///        - the ERC-721 name and symbol are constants (OpenZeppelin keeps them in storage, so both getters are
///          overridden);
///        - the owner is OpenZeppelin Ownable's storage slot, written explicitly by the deploying tool;
///        - the EIP-712 domain of setAgentWallet uses OpenZeppelin's EIP712, whose name/version are immutables in the
///          code and whose separator is rebuilt whenever address(this) or the chain id differs from the cached one;
///        - agentIds start at 0 because a fresh slot reads as zero.
contract IdentityRegistry is ERC721URIStorage, Ownable, EIP712 {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    string private constant _TOKEN_NAME = "AgentIdentity";
    string private constant _TOKEN_SYMBOL = "AGENT";
    string private constant _AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant _AGENT_WALLET_KEY_HASH = keccak256("agentWallet");
    bytes32 private constant _AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");
    uint256 private constant _MAX_DEADLINE_DELAY = 5 minutes;

    uint256 private _nextAgentId;
    mapping(uint256 agentId => mapping(string metadataKey => bytes metadataValue)) private _metadata;

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );

    constructor(address initialOwner)
        ERC721(_TOKEN_NAME, _TOKEN_SYMBOL)
        Ownable(initialOwner)
        EIP712("ERC8004IdentityRegistry", "1")
    {}

    // ---- registration ----

    function register() external returns (uint256 agentId) {
        agentId = _register("");
    }

    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = _register(agentURI);
    }

    function register(string calldata agentURI, MetadataEntry[] calldata metadata)
        external
        returns (uint256 agentId)
    {
        agentId = _register(agentURI);
        for (uint256 i = 0; i < metadata.length; i++) {
            _setMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireAuthorized(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    // ---- metadata ----

    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) external {
        _requireAuthorized(agentId);
        _setMetadata(agentId, metadataKey, metadataValue);
    }

    // ---- agentWallet ----

    /// @notice The wallet recorded for the agent, or the zero address (unknown id, unset or cleared by a transfer).
    function getAgentWallet(uint256 agentId) external view returns (address) {
        bytes memory raw = _metadata[agentId][_AGENT_WALLET_KEY];
        if (raw.length != 20) {
            return address(0);
        }
        return address(bytes20(raw));
    }

    /// @notice Point agentWallet at newWallet, proven by newWallet's EIP-712 (or EIP-1271) signature over
    ///         AgentWalletSet(agentId, newWallet, owner, deadline); deadline at most five minutes ahead.
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature)
        external
    {
        address agentOwner = _requireAuthorized(agentId);
        require(newWallet != address(0), "bad wallet");
        require(deadline >= block.timestamp, "expired");
        require(deadline <= block.timestamp + _MAX_DEADLINE_DELAY, "deadline too far");
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(_AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, agentOwner, deadline)));
        require(SignatureChecker.isValidSignatureNow(newWallet, digest, signature), "invalid wallet signature");
        _writeAgentWallet(agentId, abi.encodePacked(newWallet));
    }

    function unsetAgentWallet(uint256 agentId) external {
        _requireAuthorized(agentId);
        _writeAgentWallet(agentId, "");
    }

    // ---- ERC-721 overrides ----

    function name() public pure override returns (string memory) {
        return _TOKEN_NAME;
    }

    function symbol() public pure override returns (string memory) {
        return _TOKEN_SYMBOL;
    }

    // ---- internals ----

    function _register(string memory agentURI) private returns (uint256 agentId) {
        agentId = _nextAgentId++;
        _safeMint(msg.sender, agentId);
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _writeAgentWallet(agentId, abi.encodePacked(msg.sender));
    }

    function _setMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) private {
        require(keccak256(bytes(metadataKey)) != _AGENT_WALLET_KEY_HASH, "reserved key");
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    function _writeAgentWallet(uint256 agentId, bytes memory value) private {
        _metadata[agentId][_AGENT_WALLET_KEY] = value;
        emit MetadataSet(agentId, _AGENT_WALLET_KEY, _AGENT_WALLET_KEY, value);
    }

    /// @dev Owner, approved address or operator of the agent; reverts for unknown ids. Returns the owner.
    function _requireAuthorized(uint256 agentId) private view returns (address agentOwner) {
        agentOwner = _requireOwned(agentId);
        require(_isAuthorized(agentOwner, msg.sender, agentId), "not authorized");
    }

    /// @dev A transfer between two accounts clears agentWallet; mints keep the registrant's wallet.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        from = super._update(to, tokenId, auth);
        if (from != address(0) && to != address(0) && _metadata[tokenId][_AGENT_WALLET_KEY].length != 0) {
            _writeAgentWallet(tokenId, "");
        }
    }
}
